#include "cgrpo/tokenizer/tokenizer.h"

#include <pcre2.h>
#include <utf8proc.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "cgrpo/core/error.h"
#include "cgrpo/tokenizer/byte_level.h"

namespace cgrpo {
namespace {

using json = nlohmann::json;

struct StrHash {  // heterogeneous lookup: find(std::string_view) without building a std::string
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StrMap = std::unordered_map<std::string, V, StrHash, std::equal_to<>>;

// (left id, right id) -> (rank, merged id), open addressing with linear probing. Keys are never ~0.
class MergeTable {
 public:
  struct Slot {
    uint64_t key;
    int32_t rank, id;
  };
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  void init(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    slots_.assign(cap, Slot{kEmpty, 0, 0});
    mask_ = cap - 1;
  }
  void put(uint64_t k, int32_t rank, int32_t id) {  // a repeated pair keeps the later rank, as HashMap::collect
    for (uint64_t i = mix(k) & mask_;; i = (i + 1) & mask_)
      if (slots_[i].key == kEmpty || slots_[i].key == k) {
        slots_[i] = Slot{k, rank, id};
        return;
      }
  }
  const Slot* find(uint64_t k) const {
    for (uint64_t i = mix(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return &slots_[i];
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t mix(uint64_t k) {  // murmur3 fmix64
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    return k ^ (k >> 33);
  }
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
};

// Leftmost-longest matching of added tokens (the crate's aho-corasick MatchKind::LeftmostLongest).
class AddedMatcher {
 public:
  void add(const std::string& content, int32_t id) {
    auto& v = by_first_[static_cast<uint8_t>(content[0])];
    v.emplace_back(content, id);
    std::stable_sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
    any_ = true;
  }
  // Calls on_text(segment) for text between matches and on_token(id) for each match, in order.
  template <class F, class G>
  void split(std::string_view s, F&& on_text, G&& on_token) const {
    size_t last = 0;
    for (size_t i = 0; any_ && i < s.size(); ++i) {
      for (const auto& [tok, id] : by_first_[static_cast<uint8_t>(s[i])]) {
        if (s.compare(i, tok.size(), tok) != 0) continue;
        if (i > last) on_text(s.substr(last, i - last));
        on_token(id);
        last = i + tok.size();
        i = last - 1;
        break;
      }
    }
    if (last < s.size()) on_text(s.substr(last));
  }

 private:
  std::array<std::vector<std::pair<std::string, int32_t>>, 256> by_first_;
  bool any_ = false;
};

// Piece bytes -> BPE ids, flat open addressing (one probe sequence over 16-byte slots, keys and ids in arenas).
// Cleared when full, like the crate's bounded BPE cache.
class PieceCache {
 public:
  static constexpr size_t kMaxPiece = 256, kMaxEntries = size_t(1) << 18;
  static uint64_t hash(std::string_view s) { return XXH3_64bits(s.data(), s.size()) | 1; }  // 0 marks empty
  // Appends the cached ids of `piece` to out; false when absent.
  bool get(std::string_view piece, uint64_t h, std::vector<int32_t>& out) const {
    if (slots_.empty()) return false;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& e = slots_[i];
      if (e.h == 0) return false;
      if (e.h == h && e.key_len == piece.size() && std::memcmp(keys_.data() + e.key_off, piece.data(), piece.size()) == 0) {
        out.insert(out.end(), ids_.begin() + e.ids_off, ids_.begin() + e.ids_off + e.ids_len);
        return true;
      }
    }
  }
  void put(std::string_view piece, uint64_t h, const int32_t* ids, size_t n) {
    if (n_ >= kMaxEntries) clear();
    if (2 * (n_ + 1) > slots_.size()) grow();
    size_t i = h & mask_;
    while (slots_[i].h != 0) i = (i + 1) & mask_;
    slots_[i] = Slot{h, uint32_t(keys_.size()), uint32_t(ids_.size()), uint16_t(piece.size()), uint16_t(n)};
    keys_.append(piece);
    ids_.insert(ids_.end(), ids, ids + n);
    ++n_;
  }

 private:
  struct Slot {
    uint64_t h;
    uint32_t key_off, ids_off;
    uint16_t key_len, ids_len;
  };
  void clear() {
    slots_.clear();
    keys_.clear();
    ids_.clear();
    n_ = 0;
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(std::max<size_t>(4096, 2 * old.size()), Slot{0, 0, 0, 0, 0});
    mask_ = slots_.size() - 1;
    for (const Slot& e : old)
      if (e.h != 0) {
        size_t i = e.h & mask_;
        while (slots_[i].h != 0) i = (i + 1) & mask_;
        slots_[i] = e;
      }
  }
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t n_ = 0, mask_ = 0;
};

struct CodeFree {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataFree {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CGRPO_CHECK(f.good(), "tokenizer file ", path, ": cannot open it",
              hint("pass --tokenizer FILE or --model DIR (with DIR/tokenizer.json), or check the path"));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// tokenizer.json field access; every failure names the file and the dotted field path.
const json& field(const json& parent, const char* key, const std::string& path, const std::string& origin) {
  CGRPO_CHECK(parent.is_object() && parent.contains(key), "tokenizer file ", origin, ": field '", path,
              "' is missing", hint("expected a Hugging Face tokenizer.json with a byte-level BPE model"));
  return parent.at(key);
}
std::string str_field(const json& parent, const char* key, const std::string& path, const std::string& origin) {
  const json& v = field(parent, key, path, origin);
  CGRPO_CHECK(v.is_string(), "tokenizer file ", origin, ": field '", path, "' must be a string, got ", v.dump());
  return v.get<std::string>();
}
bool bool_field(const json& parent, const char* key, bool dflt, const std::string& path, const std::string& origin) {
  if (!parent.contains(key) || parent.at(key).is_null()) return dflt;
  const json& v = parent.at(key);
  CGRPO_CHECK(v.is_boolean(), "tokenizer file ", origin, ": field '", path, "' must be a boolean, got ", v.dump());
  return v.get<bool>();
}
int32_t id_value(const json& v, const std::string& path, const std::string& origin) {
  CGRPO_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < (int64_t(1) << 30),
              "tokenizer file ", origin, ": field '", path, "' must be a token id (integer >= 0), got ", v.dump());
  return static_cast<int32_t>(v.get<int64_t>());
}

}  // namespace

std::string nfc(std::string_view s) {
  // Every code point below U+0300 is NFC-stable and composes with nothing before it, and those are exactly the
  // UTF-8 strings whose bytes are all < 0xCC, so such text is returned as is.
  if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<uint8_t>(c) < 0xCC; })) return std::string(s);
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()), &dst,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  CGRPO_CHECK(n >= 0, "NFC normalization failed: ", utf8proc_errmsg(n));
  std::string out(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return out;
}

struct Tokenizer::Impl {
  std::string origin;
  // Per id: the bytes the ByteLevel decoder yields for it, and what it is.
  enum Kind : uint8_t { kNone, kVocab, kAdded, kSpecial };
  std::vector<std::string> id_bytes;
  std::vector<uint8_t> id_kind;
  StrMap<int32_t> vocab;  // raw bytes -> id (model vocab only)
  StrMap<int32_t> added_by_content;
  std::vector<AddedToken> added;
  std::array<int32_t, 256> byte_id{};
  MergeTable merges;
  bool ignore_merges = false;
  bool use_nfc = false;
  bool jit = false;  // split_re has JIT code: call pcre2_jit_match directly (skips pcre2_match's dispatch)
  AddedMatcher raw_added, normalized_added;
  std::unique_ptr<pcre2_code, CodeFree> split_re;

  // encode() state, guarded by mu: the piece cache and BPE scratch.
  mutable std::mutex mu;
  mutable PieceCache cache;
  struct Sym {
    int32_t id, prev, next;
  };
  struct Cand {
    int32_t rank, pos, new_id;
  };
  mutable std::vector<Sym> syms;
  mutable std::vector<Cand> heap;

  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_segment(std::string_view seg, pcre2_match_data* md, std::vector<int32_t>& out) const;
};

// models/bpe/word.rs Word::merge_all: a min-heap on (rank, position) over a linked list of symbols; an entry is
// stale when its left symbol was merged away or its pair no longer yields the same merged id.
void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  const int32_t n = static_cast<int32_t>(piece.size());
  syms.resize(n);
  heap.clear();
  const auto later = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
  const auto push = [&](int32_t pos, int32_t a, int32_t b) {
    if (const MergeTable::Slot* m = merges.find(MergeTable::key(a, b))) {
      heap.push_back(Cand{m->rank, pos, m->id});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (int32_t i = 0; i < n; ++i) syms[i] = Sym{byte_id[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  for (int32_t i = 0; i + 1 < n; ++i) push(i, syms[i].id, syms[i + 1].id);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Cand c = heap.back();
    heap.pop_back();
    Sym& s = syms[c.pos];
    if (s.id < 0 || s.next < 0) continue;
    Sym& r = syms[s.next];
    const MergeTable::Slot* m = merges.find(MergeTable::key(s.id, r.id));
    if (!m || m->id != c.new_id) continue;
    s.id = c.new_id;
    s.next = r.next;
    r.id = -1;
    if (s.next >= 0) syms[s.next].prev = c.pos;
    if (s.prev >= 0) push(s.prev, syms[s.prev].id, s.id);
    if (s.next >= 0) push(c.pos, s.id, syms[s.next].id);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_id[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (ignore_merges)
    if (auto it = vocab.find(piece); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  if (piece.size() > PieceCache::kMaxPiece) return bpe(piece, out);
  const uint64_t h = PieceCache::hash(piece);
  if (cache.get(piece, h, out)) return;
  const size_t start = out.size();
  bpe(piece, out);
  cache.put(piece, h, out.data() + start, out.size() - start);
}

// Split(regex, Isolated): matches and the gaps between them are both pieces; empty matches yield nothing.
// The subject was validated once in encode(), so every call passes PCRE2_NO_UTF_CHECK (without it PCRE2
// re-checks the whole subject per call: O(n^2), spec/stack.md §1).
void Tokenizer::Impl::encode_segment(std::string_view seg, pcre2_match_data* md, std::vector<int32_t>& out) const {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(seg.data());
  size_t last = 0, at = 0;
  while (at < seg.size()) {
    const int rc = jit ? pcre2_jit_match(split_re.get(), subject, seg.size(), at, PCRE2_NO_UTF_CHECK, md, nullptr)
                       : pcre2_match(split_re.get(), subject, seg.size(), at, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      CGRPO_FAIL("tokenizer ", origin, ": pre-tokenizer regex failed at byte ", at, ": ", reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (b > last) encode_piece(seg.substr(last, b - last), out);
    if (e > b) {
      encode_piece(seg.substr(b, e - b), out);
      last = at = e;
    } else {  // empty match: step over one character
      at = b + 1;
      while (at < seg.size() && (static_cast<uint8_t>(seg[at]) & 0xC0) == 0x80) ++at;
    }
  }
  if (last < seg.size()) encode_piece(seg.substr(last), out);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) { return from_json_text(read_file(path), path); }

Tokenizer Tokenizer::from_json_text(std::string_view text, const std::string& origin) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    CGRPO_FAIL("tokenizer file ", origin, ": not valid JSON: ", e.what(),
               hint("expected a Hugging Face tokenizer.json; is the file truncated or a Git LFS pointer?"));
  }
  CGRPO_CHECK(root.is_object(), "tokenizer file ", origin, ": top level must be a JSON object");
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  t.origin = origin;

  // ---- model: BPE with a byte-level vocab
  const json& model = field(root, "model", "model", origin);
  const std::string type = str_field(model, "type", "model.type", origin);
  CGRPO_CHECK(type == "BPE", "tokenizer file ", origin, ": field 'model.type' is '", type, "', only 'BPE' is supported");
  CGRPO_CHECK(!model.contains("dropout") || model["dropout"].is_null(), "tokenizer file ", origin,
              ": field 'model.dropout' must be null (BPE dropout is a training-time option)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    CGRPO_CHECK(!model.contains(k) || model[k].is_null() || model[k] == "", "tokenizer file ", origin, ": field 'model.",
                k, "' must be empty for byte-level BPE");
  CGRPO_CHECK(!bool_field(model, "byte_fallback", false, "model.byte_fallback", origin), "tokenizer file ", origin,
              ": field 'model.byte_fallback' = true is not supported (byte-level BPE never needs it)");
  t.ignore_merges = bool_field(model, "ignore_merges", false, "model.ignore_merges", origin);

  const json& vocab = field(model, "vocab", "model.vocab", origin);
  CGRPO_CHECK(vocab.is_object() && !vocab.empty(), "tokenizer file ", origin,
              ": field 'model.vocab' must be a non-empty object {token: id}");
  int32_t size = 0;
  for (auto it = vocab.begin(); it != vocab.end(); ++it)
    size = std::max(size, id_value(it.value(), "model.vocab[\"" + it.key() + "\"]", origin) + 1);
  std::vector<AddedToken> added;
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const json& at = root["added_tokens"];
    CGRPO_CHECK(at.is_array(), "tokenizer file ", origin, ": field 'added_tokens' must be an array");
    for (size_t i = 0; i < at.size(); ++i) {
      const std::string p = "added_tokens[" + std::to_string(i) + "]";
      AddedToken a;
      a.id = id_value(field(at[i], "id", p + ".id", origin), p + ".id", origin);
      a.content = str_field(at[i], "content", p + ".content", origin);
      a.special = bool_field(at[i], "special", false, p + ".special", origin);
      a.normalized = bool_field(at[i], "normalized", !a.special, p + ".normalized", origin);
      CGRPO_CHECK(!a.content.empty(), "tokenizer file ", origin, ": field '", p, ".content' is empty");
      CGRPO_CHECK(tok::find_invalid_utf8(a.content) == std::string::npos, "tokenizer file ", origin, ": field '", p,
                  ".content' is not valid UTF-8");
      for (const char* k : {"lstrip", "rstrip", "single_word"})
        CGRPO_CHECK(!bool_field(at[i], k, false, p + "." + k, origin), "tokenizer file ", origin, ": field '", p, ".",
                    k, "' = true is not supported (the Qwen2/Dream added tokens all have it false)");
      size = std::max(size, a.id + 1);
      added.push_back(std::move(a));
    }
  }
  t.id_bytes.assign(size, {});
  t.id_kind.assign(size, Impl::kNone);
  t.vocab.reserve(vocab.size());
  std::string bytes;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = it.value().get<int32_t>();
    CGRPO_CHECK(tok::token_to_bytes(it.key(), &bytes), "tokenizer file ", origin, ": model.vocab token \"", it.key(),
                "\" (id ", id, ") is not in the GPT-2 byte-level alphabet",
                hint("only byte-level BPE vocabularies (GPT-2 / Qwen2 style) are supported"));
    CGRPO_CHECK(t.id_kind[id] == Impl::kNone, "tokenizer file ", origin, ": model.vocab has id ", id, " twice");
    t.id_bytes[id] = bytes;
    t.id_kind[id] = Impl::kVocab;
    t.vocab.emplace(bytes, id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = t.vocab.find(std::string(1, static_cast<char>(b)));
    CGRPO_CHECK(it != t.vocab.end(), "tokenizer file ", origin, ": model.vocab lacks the byte token for byte ", b,
                " (\"", tok::bytes_to_token(std::string(1, static_cast<char>(b))), "\")");
    t.byte_id[b] = it->second;
  }

  // ---- merges: ["a", "b"] pairs (tokenizers >= 0.20) or legacy "a b" strings
  const json& merges = field(model, "merges", "model.merges", origin);
  CGRPO_CHECK(merges.is_array(), "tokenizer file ", origin, ": field 'model.merges' must be an array");
  t.merges.init(merges.size());
  std::string left, right;
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    std::string a, b;
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else if (m.is_string() && std::count(m.get_ref<const std::string&>().begin(), m.get_ref<const std::string&>().end(),
                                           ' ') == 1) {
      const std::string& s = m.get_ref<const std::string&>();
      a = s.substr(0, s.find(' '));
      b = s.substr(s.find(' ') + 1);
    } else {
      CGRPO_FAIL("tokenizer file ", origin, ": field 'model.merges[", i, "]' must be [\"a\", \"b\"] or \"a b\", got ",
                 m.dump());
    }
    const bool ok = tok::token_to_bytes(a, &left) && tok::token_to_bytes(b, &right);
    auto ia = ok ? t.vocab.find(left) : t.vocab.end();
    auto ib = ok ? t.vocab.find(right) : t.vocab.end();
    auto iab = ok ? t.vocab.find(left + right) : t.vocab.end();
    CGRPO_CHECK(ia != t.vocab.end() && ib != t.vocab.end() && iab != t.vocab.end(), "tokenizer file ", origin,
                ": field 'model.merges[", i, "]' = ", m.dump(), " uses a token that is not in model.vocab");
    t.merges.put(MergeTable::key(ia->second, ib->second), static_cast<int32_t>(i), iab->second);
  }

  // ---- added tokens: override the id's spelling; decode bytes as the ByteLevel decoder makes them
  for (const AddedToken& a : added) {
    CGRPO_CHECK(t.added_by_content.emplace(a.content, a.id).second, "tokenizer file ", origin, ": added token \"",
                a.content, "\" appears twice");
    if (!tok::token_to_bytes(a.content, &t.id_bytes[a.id])) t.id_bytes[a.id] = a.content;
    t.id_kind[a.id] = a.special ? Impl::kSpecial : Impl::kAdded;
  }

  // ---- normalizer: NFC or none
  if (root.contains("normalizer") && !root["normalizer"].is_null()) {
    const std::string nt = str_field(root["normalizer"], "type", "normalizer.type", origin);
    CGRPO_CHECK(nt == "NFC", "tokenizer file ", origin, ": field 'normalizer.type' is '", nt,
                "', only 'NFC' or a null normalizer is supported");
    t.use_nfc = true;
  }
  for (const AddedToken& a : added) {
    if (a.normalized)
      t.normalized_added.add(t.use_nfc ? nfc(a.content) : a.content, a.id);
    else
      t.raw_added.add(a.content, a.id);
  }
  t.added = std::move(added);

  // ---- pre-tokenizer: Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false, add_prefix_space=false)]
  const json& pre = field(root, "pre_tokenizer", "pre_tokenizer", origin);
  const std::string unsupported_pre = "only Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)] is supported";
  CGRPO_CHECK(pre.is_object() && pre.value("type", "") == "Sequence", "tokenizer file ", origin,
              ": field 'pre_tokenizer' is not a Sequence; ", unsupported_pre);
  const json& seq = field(pre, "pretokenizers", "pre_tokenizer.pretokenizers", origin);
  CGRPO_CHECK(seq.is_array() && seq.size() == 2 && seq[0].value("type", "") == "Split" &&
                  seq[1].value("type", "") == "ByteLevel",
              "tokenizer file ", origin, ": field 'pre_tokenizer.pretokenizers' is ", seq.dump().substr(0, 200), "; ",
              unsupported_pre);
  const std::string pat = str_field(field(seq[0], "pattern", "pre_tokenizer.pretokenizers[0].pattern", origin), "Regex",
                                    "pre_tokenizer.pretokenizers[0].pattern.Regex", origin);
  CGRPO_CHECK(seq[0].value("behavior", "") == "Isolated" && !seq[0].value("invert", false), "tokenizer file ", origin,
              ": field 'pre_tokenizer.pretokenizers[0]' must have behavior Isolated and invert false");
  CGRPO_CHECK(!seq[1].value("use_regex", true) && !seq[1].value("add_prefix_space", true), "tokenizer file ", origin,
              ": field 'pre_tokenizer.pretokenizers[1]' (ByteLevel) must have use_regex and add_prefix_space false");
  int err = 0;
  PCRE2_SIZE err_at = 0;
  t.split_re.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), PCRE2_UTF | PCRE2_UCP, &err,
                                 &err_at, nullptr));
  if (!t.split_re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    CGRPO_FAIL("tokenizer file ", origin, ": field 'pre_tokenizer.pretokenizers[0].pattern.Regex' does not compile at ",
               err_at, ": ", reinterpret_cast<char*>(msg));
  }
  t.jit = pcre2_jit_compile(t.split_re.get(), PCRE2_JIT_COMPLETE) == 0;  // else the interpreter

  // ---- decoder: ByteLevel
  const json& dec = field(root, "decoder", "decoder", origin);
  CGRPO_CHECK(dec.is_object() && dec.value("type", "") == "ByteLevel", "tokenizer file ", origin,
              ": field 'decoder' must be {\"type\": \"ByteLevel\"}, got ", dec.dump().substr(0, 200));
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const Impl& t = *impl_;
  const size_t bad = tok::find_invalid_utf8(text);
  CGRPO_CHECK(bad == std::string_view::npos, "tokenizer ", t.origin, ": encode input is not valid UTF-8 at byte ", bad,
              hint("decode the source text as UTF-8 (with replacement) before tokenizing"));
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  std::lock_guard<std::mutex> lock(t.mu);
  std::unique_ptr<pcre2_match_data, MatchDataFree> md(pcre2_match_data_create_from_pattern(t.split_re.get(), nullptr));
  const auto push_id = [&](int32_t id) { out.push_back(id); };
  const auto on_normalized = [&](std::string_view seg) { t.encode_segment(seg, md.get(), out); };
  t.raw_added.split(
      text,
      [&](std::string_view seg) {
        if (!t.use_nfc) return t.normalized_added.split(seg, on_normalized, push_id);
        const std::string n = nfc(seg);
        t.normalized_added.split(n, on_normalized, push_id);
      },
      push_id);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& t = *impl_;
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    CGRPO_CHECK(id >= 0 && id < vocab_size() && t.id_kind[id] != Impl::kNone, "tokenizer ", t.origin,
                ": decode: id ", id, " at position ", i, " is not a token (vocab size ", vocab_size(), ")",
                hint("ids >= the tokenizer's vocab are embedding padding rows; mask them out before decoding"));
    if (skip_special && t.id_kind[id] == Impl::kSpecial) continue;
    bytes += t.id_bytes[id];
  }
  return tok::utf8_lossy(bytes);
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_kind.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end()) return it->second;
  std::string bytes;
  if (!tok::token_to_bytes(token, &bytes)) return std::nullopt;
  if (auto it = impl_->vocab.find(bytes); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

bool Tokenizer::has_token(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->id_kind[size_t(id)] != Impl::kNone;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  const Impl& t = *impl_;
  if (id < 0 || id >= vocab_size() || t.id_kind[id] == Impl::kNone) return {};
  if (t.id_kind[id] == Impl::kVocab) return tok::bytes_to_token(t.id_bytes[id]);
  for (const AddedToken& a : t.added)
    if (a.id == id) return a.content;
  return {};
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->id_kind[id] == Impl::kSpecial;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
const std::string& Tokenizer::origin() const { return impl_->origin; }

}  // namespace cgrpo
