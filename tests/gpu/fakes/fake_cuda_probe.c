/* Why: the forced false-pass test (tests/gpu/false_pass.sh) must show that run.sh and the GPU test
 * processes FAIL when CUDA answers wrongly on a machine with a GPU. Preloaded (LD_PRELOAD), this library
 * replaces the CUDA runtime's cudaGetDeviceCount, the one call every GPU check starts from:
 *   MT_FAKE_CUDA=error:N   returns cudaError_t N (35: cudaErrorInsufficientDriver, an old driver)
 *   MT_FAKE_CUDA=count:N   returns success with N devices (none of which the runtime can then open)
 * The symbol carries the runtime's own version (a version script written by tests/gpu/CMakeLists.txt),
 * so that it binds in place of the versioned one the executables ask for. */
#include <stdlib.h>
#include <string.h>

int cudaGetDeviceCount(int* count) {
  const char* how = getenv("MT_FAKE_CUDA");
  *count = 0;
  if (how && strncmp(how, "count:", 6) == 0) {
    *count = atoi(how + 6);
    return 0;
  }
  if (how && strncmp(how, "error:", 6) == 0) return atoi(how + 6);
  return 100; /* cudaErrorNoDevice */
}
