// _helper_C: an extension whose code lives partly in a shared library built in the same tree
// (libminivllm_helper.so), like an extension that links a library it installs beside itself.
#include <Python.h>

extern "C" long minivllm_helper_value(void);

static PyObject* known_value(PyObject*, PyObject*) {
  return PyLong_FromLong(minivllm_helper_value());
}

static PyMethodDef methods[] = {
    {"known_value", known_value, METH_NOARGS, "99, from libminivllm_helper.so."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_helper_C", "minivllm extension linking a shared library", -1,
    methods, nullptr, nullptr, nullptr, nullptr,
};

PyMODINIT_FUNC PyInit__helper_C(void) { return PyModule_Create(&module_def); }
