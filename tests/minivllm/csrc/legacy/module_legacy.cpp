// _legacy_C: only built with -DMINIVLLM_PRECOMPILED=ON, for the stand-in
// prebuilt wheel. It plays an extension that older vLLM wheels shipped and the
// current build no longer produces (a stale .so left in vllm/).
#include <Python.h>

static PyObject* known_value(PyObject*, PyObject*) { return PyLong_FromLong(3); }

static PyMethodDef methods[] = {
    {"known_value", known_value, METH_NOARGS, "Always 3."},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_legacy_C", "minivllm stale legacy extension", -1, methods,
    nullptr, nullptr, nullptr, nullptr,
};

PyMODINIT_FUNC PyInit__legacy_C(void) { return PyModule_Create(&module_def); }
