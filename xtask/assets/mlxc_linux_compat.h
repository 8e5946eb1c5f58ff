/*
 * tiny-llm-rs: force-included (`-include`) into every mlx-c translation unit
 * (g++) and into bindgen's libclang parse when mlx-c is built on Linux x86_64
 * against the MLX CPU wheel. No mlx-c source file is edited.
 *
 * Why it exists (see shared docs, mlx-on-linux.md):
 *  - mlx-c's half.h only defines float16_t / bfloat16_t on aarch64, and with
 *    them the f16/bf16 item/data accessors that mlx-rs calls. On x86_64 they
 *    are plain 16-bit storage types here: MLX only reinterprets the bytes.
 *    For clang (bindgen) float16_t is __fp16, which bindgen turns into the
 *    `__BindgenFloat16` newtype mlx-rs expects; for g++ both are uint16_t.
 *  - libstdc++ 12 lacks std::format; mlx-c only formats with "{}", so a small
 *    stand-in is enough when __cpp_lib_format is absent.
 */
#ifndef TINY_LLM_MLXC_LINUX_COMPAT_H
#define TINY_LLM_MLXC_LINUX_COMPAT_H

#if defined(__x86_64__)
#include <stdint.h>
#ifndef HAS_FLOAT16
#define HAS_FLOAT16
#ifdef __clang__
typedef __fp16 float16_t;
#else
typedef uint16_t float16_t;
#endif
#endif /* HAS_FLOAT16 */
#ifndef HAS_BFLOAT16
#define HAS_BFLOAT16
typedef uint16_t bfloat16_t;
#endif /* HAS_BFLOAT16 */
#endif /* __x86_64__ */

#ifdef __cplusplus
#include <version>
#ifndef __cpp_lib_format
#include <sstream>
#include <string>
#include <string_view>
namespace std {
namespace tiny_llm_compat {
inline void put(std::ostringstream& out, std::string_view rest) { out << rest; }
template <typename First, typename... Tail>
void put(std::ostringstream& out, std::string_view rest, const First& first,
         const Tail&... tail) {
  const auto at = rest.find("{}");
  if (at == std::string_view::npos) {
    out << rest;
    return;
  }
  out << rest.substr(0, at) << first;
  put(out, rest.substr(at + 2), tail...);
}
} // namespace tiny_llm_compat
template <typename... Args>
std::string format(std::string_view pattern, const Args&... args) {
  std::ostringstream out;
  tiny_llm_compat::put(out, pattern, args...);
  return out.str();
}
} // namespace std
#endif /* __cpp_lib_format */
#endif /* __cplusplus */

#endif /* TINY_LLM_MLXC_LINUX_COMPAT_H */
