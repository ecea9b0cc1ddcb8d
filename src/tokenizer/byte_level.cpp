#include "cgrpo/tokenizer/byte_level.h"

#include <array>

namespace cgrpo::tok {
namespace {

struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 324> from_cp{};  // images are < 256 + 68
  ByteMap() {
    from_cp.fill(-1);
    uint32_t extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : 256 + extra++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

uint32_t byte_to_codepoint(uint8_t b) { return byte_map().to_cp[b]; }

int codepoint_to_byte(uint32_t cp) { return cp < byte_map().from_cp.size() ? byte_map().from_cp[cp] : -1; }

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Table 3-7: the lead byte fixes the length and the range of the second byte; later bytes are 80..BF.
// Returns the number of bytes of s[i..] that form a valid prefix (the maximal subpart when < need).
static size_t utf8_prefix(std::string_view s, size_t i, size_t* need, uint32_t* cp) {
  const uint8_t b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    *need = 1;
    *cp = b0;
    return 1;
  }
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    *need = 2;
    *cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    *need = 3;
    *cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // no overlongs
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    *need = 4;
    *cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // no overlongs
    if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    *need = 1;  // 80..C1, F5..FF never start a sequence
    return 0;
  }
  size_t k = 1;
  for (; k < *need && i + k < s.size(); ++k) {
    const uint8_t b = static_cast<uint8_t>(s[i + k]);
    if (b < lo || b > hi) break;
    *cp = (*cp << 6) | (b & 0x3F);
    lo = 0x80;
    hi = 0xBF;
  }
  return k;
}

size_t next_utf8(std::string_view s, size_t i, uint32_t* cp) {
  size_t need = 0;
  const size_t k = utf8_prefix(s, i, &need, cp);
  return k == need ? k : 0;
}

size_t find_invalid_utf8(std::string_view s) {
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t k = next_utf8(s, i, &cp);
    if (k == 0) return i;
    i += k;
  }
  return std::string_view::npos;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      out += s[i++];
      continue;
    }
    size_t need = 0;
    const size_t k = utf8_prefix(s, i, &need, &cp);
    if (k == need) {
      out.append(s.substr(i, k));
      i += k;
    } else {
      out += "\xEF\xBF\xBD";  // one U+FFFD per maximal subpart; an invalid lead byte is a subpart of 1
      i += k ? k : 1;
    }
  }
  return out;
}

bool token_to_bytes(std::string_view token, std::string* bytes) {
  bytes->clear();
  uint32_t cp;
  for (size_t i = 0; i < token.size();) {
    const size_t k = next_utf8(token, i, &cp);
    if (k == 0) return false;
    const int b = codepoint_to_byte(cp);
    if (b < 0) return false;
    *bytes += static_cast<char>(b);
    i += k;
  }
  return true;
}

std::string bytes_to_token(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, byte_to_codepoint(static_cast<uint8_t>(c)));
  return out;
}

}  // namespace cgrpo::tok
