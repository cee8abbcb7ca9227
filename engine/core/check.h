// Why: one vocabulary for failure. Bad input (a manifest, a file, an argument) is an InputError and
// ends the program with exit 2; a failure at run time (a broken invariant, I/O, MPI) is an Error and
// ends it with exit 1. Both carry one line that names what is wrong. The MT_* checks stay on in
// release builds; assert() is never used for validation.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace mt {

// Bad input from the user: exit code 2.
struct InputError : std::runtime_error {
  explicit InputError(const std::string& what) : std::runtime_error(what) {}
};

// A failure at run time: exit code 1.
struct Error : std::runtime_error {
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

std::string check_message(const char* what, const char* statement, const char* file, int line,
                          const std::string& hint);

// Concatenates its arguments with operator<< (for messages built from numbers and strings).
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace mt

// MT_CHECK(cond, hint...): an internal invariant; throws mt::Error naming the statement, file:line
// and the hint (any streamable arguments).
#define MT_CHECK(cond, ...)                                                                   \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw ::mt::Error(::mt::check_message("check failed", #cond, __FILE__, __LINE__,        \
                                            ::mt::str(__VA_ARGS__)));                         \
  } while (0)

// MT_INPUT(cond, message...): a property of the user's input; throws mt::InputError with the
// message alone (it must name the field or file at fault).
#define MT_INPUT(cond, ...)                                        \
  do {                                                             \
    if (!(cond)) throw ::mt::InputError(::mt::str(__VA_ARGS__));   \
  } while (0)

// MT_MPI_CHECK(call): an MPI call that must return MPI_SUCCESS.
#define MT_MPI_CHECK(call)                                                                     \
  do {                                                                                         \
    int mt_mpi_rc_ = (call);                                                                   \
    if (mt_mpi_rc_ != 0)                                                                       \
      throw ::mt::Error(::mt::check_message("MPI call failed", #call, __FILE__, __LINE__,      \
                                            ::mt::str("MPI error code ", mt_mpi_rc_,            \
                                                      "; a peer rank may have failed")));      \
  } while (0)
