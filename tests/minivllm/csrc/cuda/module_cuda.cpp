// _cuda_C: the Python glue is C++; the work is in the .cu files next to it.
// Importing and known_value()/device_count() work without a GPU.
#include <Python.h>

#include <vector>

#include "cuda_ops.h"

static PyObject* known_value(PyObject*, PyObject*) {
  return PyLong_FromLong(minivllm::host_value());
}

static PyObject* device_count(PyObject*, PyObject*) {
  return PyLong_FromLong(minivllm::device_count());
}

// Copy a sequence of numbers into a vector<float>; false with an exception set
// on failure.
static bool to_floats(PyObject* seq_obj, const char* what, std::vector<float>& out) {
  PyObject* seq = PySequence_Fast(seq_obj, what);
  if (!seq) return false;
  Py_ssize_t n = PySequence_Size(seq);
  out.resize(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PySequence_GetItem(seq, i);
    if (!item) { Py_DECREF(seq); return false; }
    double v = PyFloat_AsDouble(item);
    Py_DECREF(item);
    if (v == -1.0 && PyErr_Occurred()) { Py_DECREF(seq); return false; }
    out[static_cast<size_t>(i)] = static_cast<float>(v);
  }
  Py_DECREF(seq);
  return true;
}

static PyObject* saxpy(PyObject*, PyObject* args) {
  float a = 0.f;
  PyObject* xs_obj = nullptr;
  PyObject* ys_obj = nullptr;
  if (!PyArg_ParseTuple(args, "fOO:saxpy", &a, &xs_obj, &ys_obj)) return nullptr;
  std::vector<float> xs, ys;
  if (!to_floats(xs_obj, "saxpy: xs must be a sequence of floats", xs)) return nullptr;
  if (!to_floats(ys_obj, "saxpy: ys must be a sequence of floats", ys)) return nullptr;
  if (xs.size() != ys.size()) {
    PyErr_SetString(PyExc_ValueError, "saxpy: xs and ys must have the same length");
    return nullptr;
  }
  const char* err = minivllm::saxpy(a, xs.data(), ys.data(), static_cast<int>(xs.size()));
  if (err) {
    PyErr_SetString(PyExc_RuntimeError, err);
    return nullptr;
  }
  PyObject* result = PyList_New(static_cast<Py_ssize_t>(ys.size()));
  if (!result) return nullptr;
  for (size_t i = 0; i < ys.size(); ++i) {
    PyObject* f = PyFloat_FromDouble(ys[i]);
    if (!f) { Py_DECREF(result); return nullptr; }
    PyList_SetItem(result, static_cast<Py_ssize_t>(i), f);  // steals f
  }
  return result;
}

static PyMethodDef methods[] = {
    {"known_value", known_value, METH_NOARGS, "MINIVLLM_HOST_VALUE from host_value.cu (1234)."},
    {"device_count", device_count, METH_NOARGS, "cudaGetDeviceCount(); 0 without a GPU."},
    {"saxpy", saxpy, METH_VARARGS, "saxpy(a, xs, ys) -> [a*x + y] computed on the GPU."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_cuda_C", "minivllm CUDA extension", -1, methods,
    nullptr, nullptr, nullptr, nullptr,
};

PyMODINIT_FUNC PyInit__cuda_C(void) { return PyModule_Create(&module_def); }
