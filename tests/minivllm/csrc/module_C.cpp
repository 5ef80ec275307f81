// The _C extension: C++ only, built for every device (like vLLM's _C).
// Limited API (Py_LIMITED_API is set by CMake), no pybind11, no torch.
#include <Python.h>

#include <string>
#include <vector>

#include "common/shared.h"
#include "ops/ops.h"

namespace {

// Op registrations in the shape of vLLM's csrc/*/torch_bindings.cpp
// (`ops.impl("rms_norm", torch::kCPU, &rms_norm)`): which C++ function implements which op.
// `vllm-dev test` reads these calls to pick the tests of a changed file; `_C.op_names()` lists
// them. No torch here: Library only records the names.
struct Library {
  std::vector<std::string> names;
  void impl(const char* name, long (*)(long, long)) { names.emplace_back(name); }
};

const Library& registered_ops() {
  static const Library ops = [] {
    Library ops;
    ops.impl("add", &minivllm::add);
    ops.impl("scale", &minivllm::scale);
    return ops;
  }();
  return ops;
}

}  // namespace

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

static PyObject* op_names(PyObject*, PyObject*) {
  const auto& names = registered_ops().names;
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(names.size()));
  if (list == nullptr) return nullptr;
  for (size_t i = 0; i < names.size(); ++i) {
    PyList_SetItem(list, static_cast<Py_ssize_t>(i), PyUnicode_FromString(names[i].c_str()));
  }
  return list;
}

static PyMethodDef methods[] = {
    {"known_value", known_value, METH_NOARGS, "42 (1 in a precompiled-wheel build)."},
    {"shared_value", shared_value, METH_NOARGS, "From common/shared.h (shared with _fast_C)."},
    {"add", add, METH_VARARGS, "add(a, b) -> a + b for ints."},
    {"scale", scale, METH_VARARGS, "scale(value, factor) -> value * factor for ints."},
    {"op_names", op_names, METH_NOARGS, "The registered ops (see registered_ops)."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_C", "minivllm C++ extension", -1, methods,
    nullptr, nullptr, nullptr, nullptr,
};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
