// The _C extension: C++ only, built for every device (like vLLM's _C).
// Limited API (Py_LIMITED_API is set by CMake), no pybind11, no torch.
#include <Python.h>

#include "common/shared.h"
#include "ops/ops.h"

// A build with -DMINIVLLM_PRECOMPILED=ON stands in for the kernels of a
// prebuilt vLLM wheel; tests tell the two apart by this value.
#ifdef MINIVLLM_PRECOMPILED
#define MINIVLLM_C_KNOWN_VALUE 1
#else
#define MINIVLLM_C_KNOWN_VALUE 42
#endif

static PyObject* known_value(PyObject*, PyObject*) {
  return PyLong_FromLong(MINIVLLM_C_KNOWN_VALUE);
}

static PyObject* shared_value(PyObject*, PyObject*) {
  return PyLong_FromLong(minivllm::shared_value());
}

static PyObject* add(PyObject*, PyObject* args) {
  long a = 0, b = 0;
  if (!PyArg_ParseTuple(args, "ll:add", &a, &b)) return nullptr;
  return PyLong_FromLong(minivllm::add(a, b));
}

static PyObject* scale(PyObject*, PyObject* args) {
  long value = 0, factor = 0;
  if (!PyArg_ParseTuple(args, "ll:scale", &value, &factor)) return nullptr;
  return PyLong_FromLong(minivllm::scale(value, factor));
}

static PyMethodDef methods[] = {
    {"known_value", known_value, METH_NOARGS, "42 (1 in a precompiled-wheel build)."},
    {"shared_value", shared_value, METH_NOARGS, "From common/shared.h (shared with _fast_C)."},
    {"add", add, METH_VARARGS, "add(a, b) -> a + b for ints."},
    {"scale", scale, METH_VARARGS, "scale(value, factor) -> value * factor for ints."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_C", "minivllm C++ extension", -1, methods,
    nullptr, nullptr, nullptr, nullptr,
};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
