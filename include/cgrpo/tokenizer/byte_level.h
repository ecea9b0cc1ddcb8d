// Byte-level helpers shared by the tokenizer: the GPT-2 byte<->unicode map and UTF-8 handling that matches
// the Rust `tokenizers` crate (String::from_utf8_lossy) byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cgrpo::tok {

// GPT-2 `bytes_to_unicode()`: printable bytes 33..126, 161..172, 174..255 map to themselves, the other 68
// bytes to U+0100.. in byte order (so ' ' -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
uint32_t byte_to_codepoint(uint8_t b);
// Inverse map; -1 when the code point is not one of the 256 images.
int codepoint_to_byte(uint32_t cp);

// Appends the UTF-8 encoding of a code point (cp <= 0x10FFFF, not a surrogate).
void append_utf8(std::string& out, uint32_t cp);

// Decodes one well-formed UTF-8 sequence at s[i]; returns its length (1..4), or 0 when s[i..] does not start
// with a well-formed sequence (Unicode Table 3-7), and stores the code point in *cp.
size_t next_utf8(std::string_view s, size_t i, uint32_t* cp);

// Byte offset of the first ill-formed sequence, or npos when s is valid UTF-8.
size_t find_invalid_utf8(std::string_view s);

// UTF-8 decoding with U+FFFD for each *maximal subpart* of an ill-formed sequence (Unicode §3.9, "U+FFFD
// Substitution of Maximal Subparts"). This is what Rust's String::from_utf8_lossy and Python's
// bytes.decode('utf-8', errors='replace') do: E4 BD 41 -> U+FFFD 'A'; C0 80 -> U+FFFD U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Byte-level token string (e.g. "Ġworld") -> raw bytes (" world"). False when a character is not in the map.
bool token_to_bytes(std::string_view token, std::string* bytes);
// Raw bytes -> byte-level token string.
std::string bytes_to_token(std::string_view bytes);

}  // namespace cgrpo::tok
