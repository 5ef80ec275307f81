// libminivllm_helper.so: a plain shared library (not a Python module) that _helper_C links.
// Installed beside the extensions; _helper_C finds it through INSTALL_RPATH $ORIGIN.
extern "C" long minivllm_helper_value(void) { return 99; }
