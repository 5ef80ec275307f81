// _fast_C: one tiny translation unit that builds in well under a second, for
// tests that need a rebuild to happen without waiting.
#include <Python.h>

#include "../common/shared.h"

static PyObject* known_value(PyObject*, PyObject*) { return PyLong_FromLong(7); }

static PyObject* shared_value(PyObject*, PyObject*) {
  return PyLong_FromLong(minivllm::shared_value());
}

static PyMethodDef methods[] = {
    {"known_value", known_value, METH_NOARGS, "Always 7."},
    {"shared_value", shared_value, METH_NOARGS, "From common/shared.h (shared with _C)."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fast_C", "minivllm fast extension", -1, methods,
    nullptr, nullptr, nullptr, nullptr,
};

PyMODINIT_FUNC PyInit__fast_C(void) { return PyModule_Create(&module_def); }
