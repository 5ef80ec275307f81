// _heavy_C: Python glue for the generated heavy translation units.
// known_value() needs no GPU; run_all() does.
#include <Python.h>

#include "heavy_registry.h"

namespace minivllm {
#define MINIVLLM_DECLARE_HEAVY_RUN(i) const char* heavy_run_##i(double* checksum);
MINIVLLM_HEAVY_FOR_EACH_TU(MINIVLLM_DECLARE_HEAVY_RUN)
#undef MINIVLLM_DECLARE_HEAVY_RUN
}  // namespace minivllm

static PyObject* known_value(PyObject*, PyObject*) { return PyLong_FromLong(MINIVLLM_HEAVY_TUS); }

static PyObject* run_all(PyObject*, PyObject*) {
  double checksum = 0.0;
  const char* err = nullptr;
#define MINIVLLM_CALL_HEAVY_RUN(i) \
  if (!err) err = minivllm::heavy_run_##i(&checksum);
  MINIVLLM_HEAVY_FOR_EACH_TU(MINIVLLM_CALL_HEAVY_RUN)
#undef MINIVLLM_CALL_HEAVY_RUN
  if (err) {
    PyErr_SetString(PyExc_RuntimeError, err);
    return nullptr;
  }
  return PyFloat_FromDouble(checksum);
}

static PyMethodDef methods[] = {
    {"known_value", known_value, METH_NOARGS, "The number of generated heavy translation units."},
    {"run_all", run_all, METH_NOARGS, "Launch every heavy kernel on the GPU; returns a checksum."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_heavy_C", "minivllm compile-heavy CUDA extension", -1, methods,
    nullptr, nullptr, nullptr, nullptr,
};

PyMODINIT_FUNC PyInit__heavy_C(void) { return PyModule_Create(&module_def); }
