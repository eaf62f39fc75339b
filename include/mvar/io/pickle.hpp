// mvar/io/pickle.hpp — a restricted unpickler: a stack machine for the subset of Python's pickle
// (protocols 2–4) that plain data needs, which never imports, calls or constructs anything itself.
//
// The result is a PickleTree: an arena of PickleValues (None, bool, int, float, str, bytes, tuple,
// list, dict, an *allowed* global, an object made by a hook, or an opaque placeholder) addressed by index, so
// shared and even cyclic references (the memo allows both) cost no recursion and no leaks.
// What a GLOBAL may name, what a persistent id means, what REDUCE and BUILD do: all decided by the
// caller's PickleHooks (io/pth.hpp supplies PyTorch's); with no hook the opcode is refused.
//
// Opaque placeholders (PickleHooks::opaque_unknown_globals): a GLOBAL the hooks do not allow then
// becomes a PickleKind::Opaque value naming it instead of an error, and so does everything made
// from one — REDUCE or NEWOBJ of an opaque callable gives a new Opaque (its arguments are never
// looked at), BUILD on an Opaque is ignored. Nothing is imported, called or constructed; the
// caller decides where an Opaque may appear (io/pth.hpp: anywhere but inside the bound state dict).
//
// Refused with an error naming the opcode and its byte offset: every opcode not listed in
// `Unpickler::step` (INST, OBJ, EXT*, sets, out-of-band buffers, the text-mode ones; NEWOBJ and
// NEWOBJ_EX except of an opaque placeholder),
// memo gets of unset slots, memo indices or stack sizes above PickleLimits, containers nested
// deeper than PickleLimits::max_depth, lengths past the end of the data, dict keys that are lists or
// dicts, a dict key given twice (a pickler never writes one twice: a second value would silently
// replace the first), and a pickle that does not end in STOP with exactly one value left.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mvar/core/error.hpp"

namespace mvar {

enum class PickleKind : std::uint8_t { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Object, Opaque };

constexpr std::string_view pickle_kind_name(PickleKind k) {
  switch (k) {
    case PickleKind::None: return "None";
    case PickleKind::Bool: return "bool";
    case PickleKind::Int: return "int";
    case PickleKind::Float: return "float";
    case PickleKind::String: return "str";
    case PickleKind::Bytes: return "bytes";
    case PickleKind::Tuple: return "tuple";
    case PickleKind::List: return "list";
    case PickleKind::Dict: return "dict";
    case PickleKind::Global: return "global";
    case PickleKind::Object: return "object";
    case PickleKind::Opaque: return "opaque object";
  }
  return "?";
}

/// One value. Children are indices into the owning PickleTree.
struct PickleValue {
  PickleKind kind = PickleKind::None;
  std::int64_t i = 0;               // Bool, Int; Object: the hook's handle; Opaque: byte offset of its GLOBAL
  double f = 0;                     // Float
  std::string s;                    // String, Bytes; Global, Opaque: "module.name"
  std::vector<std::uint32_t> items; // Tuple, List; Dict: key, value, key, value, … (insertion order)
  int depth = 0;                    // container nesting (0 for scalars)

  static PickleValue make(PickleKind k, std::int64_t i = 0) {
    PickleValue v;
    v.kind = k;
    v.i = i;
    return v;
  }
  static PickleValue object(std::int64_t handle) { return make(PickleKind::Object, handle); }
  static PickleValue dict() { return make(PickleKind::Dict); }
};

class PickleTree {
 public:
  const PickleValue& operator[](std::uint32_t id) const { return values_[id]; }
  std::uint32_t root() const { return root_; }
  std::size_t size() const { return values_.size(); }
  /// The id of the value stored under string key `key` in dict `dict`, or nullopt.
  std::optional<std::uint32_t> get(const PickleValue& dict, std::string_view key) const {
    for (std::size_t k = 0; k + 1 < dict.items.size(); k += 2) {
      const PickleValue& kv = values_[dict.items[k]];
      if (kv.kind == PickleKind::String && kv.s == key) return dict.items[k + 1];
    }
    return std::nullopt;
  }
  /// A short description for error messages: "str 'abc'", "int 3", "global 'os.system'", "tuple of 2".
  std::string describe(std::uint32_t id) const {
    const PickleValue& v = values_[id];
    switch (v.kind) {
      case PickleKind::Bool:
      case PickleKind::Int: return concat(pickle_kind_name(v.kind), ' ', v.i);
      case PickleKind::Float: return concat("float ", v.f);
      case PickleKind::String:
      case PickleKind::Global: return concat(pickle_kind_name(v.kind), " '", v.s.substr(0, 80), "'");
      case PickleKind::Opaque: return concat("object of unknown type '", v.s.substr(0, 80), "' (GLOBAL at byte ", v.i, ")");
      case PickleKind::Tuple:
      case PickleKind::List: return concat(pickle_kind_name(v.kind), " of ", v.items.size());
      case PickleKind::Dict: return concat("dict of ", v.items.size() / 2);
      default: return std::string(pickle_kind_name(v.kind));
    }
  }

 private:
  friend class Unpickler;
  std::vector<PickleValue> values_;
  std::uint32_t root_ = 0;
};

/// What the caller allows. A hook refuses by throwing mvar::Error with a short reason; the
/// unpickler adds the source and byte offset.
struct PickleHooks {
  /// GLOBAL / STACK_GLOBAL: may `module.name` be referenced at all?
  std::function<bool(std::string_view module, std::string_view name)> allow_global;
  /// BINPERSID: the value a persistent id stands for.
  std::function<PickleValue(const PickleTree&, std::uint32_t pid)> persistent_load;
  /// REDUCE: callable (always an allowed Global) applied to args (always a tuple).
  std::function<PickleValue(const PickleTree&, std::uint32_t callable, std::uint32_t args)> reduce;
  /// BUILD: set state on obj; return normally to accept (and ignore) it.
  std::function<void(const PickleTree&, std::uint32_t obj, std::uint32_t state)> build;
  /// A GLOBAL that allow_global refuses becomes an Opaque placeholder instead of an error (see
  /// the header comment); REDUCE / NEWOBJ / BUILD on it never reach the hooks.
  bool opaque_unknown_globals = false;
};

struct PickleLimits {
  std::size_t max_values = std::size_t{1} << 22;  // arena entries (≤ 1 per opcode; ~100 B each)
  std::size_t max_stack = std::size_t{1} << 20;   // stack entries, marks included
  std::size_t max_memo = std::size_t{1} << 20;    // highest memo index + 1
  int max_depth = 64;                             // nesting of tuples/lists/dicts
};

class Unpickler {
 public:
  Unpickler(std::span<const std::byte> data, std::string source, const PickleHooks& hooks, PickleLimits limits = {})
      : data_(data), source_(std::move(source)), hooks_(hooks), limits_(limits) {}

  PickleTree run() {
    while (!done_) {
      op_pos_ = pos_;
      const std::uint8_t op = u8();
      try {
        step(op);
      } catch (const Error& e) {
        if (std::string_view(e.what()).starts_with("pickle: ")) throw;
        throw fail(e.what());
      }
    }
    return std::move(tree_);
  }

 private:
  static constexpr std::uint32_t kMark = 0xffffffffu;  // a stack slot that is a MARK

  Error fail(const std::string& what) const {
    return Error(concat("pickle: ", source_, ": at byte ", op_pos_, ": ", what));
  }

  // ---- reading the opcode stream ----
  const std::byte* take(std::uint64_t n) {
    if (n > data_.size() - pos_) throw fail(concat("argument of ", n, " bytes runs past the end of the pickle"));
    const std::byte* p = data_.data() + pos_;
    pos_ += static_cast<std::size_t>(n);
    return p;
  }
  std::uint8_t u8() {
    if (pos_ >= data_.size()) throw fail("pickle ends without STOP");
    return std::to_integer<std::uint8_t>(data_[pos_++]);
  }
  std::uint64_t uint_le(int n) {
    const std::byte* p = take(n);
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint8_t>(p[i]);
    return v;
  }
  std::string bytes(std::uint64_t n) { return std::string(reinterpret_cast<const char*>(take(n)), n); }
  std::string line() {  // GLOBAL's "module\n" and "name\n"
    const std::size_t start = pos_;
    while (pos_ < data_.size() && data_[pos_] != std::byte{'\n'}) ++pos_;
    if (pos_ >= data_.size()) throw fail("GLOBAL argument is not newline-terminated");
    std::string s(reinterpret_cast<const char*>(data_.data() + start), pos_ - start);
    ++pos_;
    return s;
  }

  // ---- arena and stack ----
  std::uint32_t add(PickleValue v) {
    if (tree_.values_.size() >= limits_.max_values) throw fail(concat("more than ", limits_.max_values, " values"));
    tree_.values_.push_back(std::move(v));
    return static_cast<std::uint32_t>(tree_.values_.size() - 1);
  }
  void push(std::uint32_t id) {
    if (stack_.size() >= limits_.max_stack) throw fail(concat("stack grows past ", limits_.max_stack, " entries"));
    stack_.push_back(id);
  }
  void push(PickleValue v) { push(add(std::move(v))); }
  std::uint32_t pop() {
    if (stack_.empty() || stack_.back() == kMark) throw fail("stack underflow");
    const std::uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::uint32_t top() const {
    if (stack_.empty() || stack_.back() == kMark) throw fail("stack underflow");
    return stack_.back();
  }
  /// Pops everything above the topmost MARK, and the MARK.
  std::vector<std::uint32_t> pop_mark() {
    std::size_t m = stack_.size();
    while (m > 0 && stack_[m - 1] != kMark) --m;
    if (m == 0) throw fail("no MARK on the stack");
    std::vector<std::uint32_t> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m - 1);
    return out;
  }
  PickleValue& at(std::uint32_t id) { return tree_.values_[id]; }

  void grow_depth(PickleValue& container, std::uint32_t child) {
    const int d = tree_.values_[child].depth + 1;
    if (d > container.depth) container.depth = d;
    if (container.depth > limits_.max_depth)
      throw fail(concat("containers nested deeper than ", limits_.max_depth, " levels"));
  }
  std::uint32_t make_seq(PickleKind kind, std::vector<std::uint32_t> items) {
    PickleValue v = PickleValue::make(kind);
    for (auto c : items) grow_depth(v, c);
    v.items = std::move(items);
    return add(std::move(v));
  }
  void append(std::uint32_t list, std::span<const std::uint32_t> items) {
    if (at(list).kind != PickleKind::List) throw fail(concat("APPEND(S) to a ", tree_.describe(list), ", not a list"));
    for (auto c : items) {
      grow_depth(at(list), c);
      at(list).items.push_back(c);
    }
  }
  // Dict keys are compared by kind and content (str, int, bool, None, bytes) or, for floats,
  // tuples and opaque objects, by identity (they can never be state-dict names). A pickler writes
  // each key of a dict once, so a repeated key is a crafted file: refused, not replaced.
  std::string key_of(std::uint32_t k) const {
    const PickleValue& v = tree_.values_[k];
    switch (v.kind) {
      case PickleKind::String: return "s" + v.s;
      case PickleKind::Bytes: return "b" + v.s;
      case PickleKind::Int:
      case PickleKind::Bool: return concat("i", v.i);  // Python: True == 1
      case PickleKind::None: return "n";
      case PickleKind::Float:
      case PickleKind::Tuple:
      case PickleKind::Opaque: return concat("#", k);
      default: throw fail(concat("dict key of type ", pickle_kind_name(v.kind), " is not supported"));
    }
  }
  void set_items(std::uint32_t dict, std::span<const std::uint32_t> kv) {
    if (at(dict).kind != PickleKind::Dict) throw fail(concat("SETITEM(S) on a ", tree_.describe(dict), ", not a dict"));
    if (kv.size() % 2) throw fail("SETITEMS with an odd number of items");
    auto& index = dict_index_[dict];
    for (std::size_t i = 0; i < kv.size(); i += 2) {
      grow_depth(at(dict), kv[i + 1]);
      const bool fresh = index.emplace(key_of(kv[i]), at(dict).items.size()).second;
      if (!fresh) throw fail(concat("dict key ", tree_.describe(kv[i]), " is given twice"));
      at(dict).items.push_back(kv[i]);
      at(dict).items.push_back(kv[i + 1]);
    }
  }
  void memo_put(std::uint64_t idx) {
    if (idx >= limits_.max_memo) throw fail(concat("memo index ", idx, " exceeds the limit of ", limits_.max_memo));
    if (memo_.size() <= idx) memo_.resize(static_cast<std::size_t>(idx) + 1, kMark);
    memo_[static_cast<std::size_t>(idx)] = top();
  }
  void memo_get(std::uint64_t idx) {
    if (idx >= memo_.size() || memo_[static_cast<std::size_t>(idx)] == kMark)
      throw fail(concat("memo slot ", idx, " is read before it is written"));
    push(memo_[static_cast<std::size_t>(idx)]);
  }
  void global(const std::string& module, const std::string& name) {
    if (!hooks_.allow_global || !hooks_.allow_global(module, name)) {
      if (hooks_.opaque_unknown_globals) {
        PickleValue v = PickleValue::make(PickleKind::Opaque, std::int64_t(op_pos_));
        v.s = module + "." + name;
        push(std::move(v));
        return;
      }
      throw fail(concat("GLOBAL '", module.substr(0, 120), ".", name.substr(0, 120), "' is not allowed"));
    }
    PickleValue v = PickleValue::make(PickleKind::Global);
    v.s = module + "." + name;
    push(std::move(v));
  }
  /// A new placeholder made from an opaque class or callable (same name, no state, no children).
  std::uint32_t opaque_from(std::uint32_t source) {
    PickleValue v = PickleValue::make(PickleKind::Opaque, at(source).i);
    v.s = at(source).s;
    return add(std::move(v));
  }
  static std::int64_t signed_le(const std::byte* p, std::uint64_t n) {  // two's complement, n ≤ 8
    std::uint64_t v = 0;
    for (std::uint64_t i = n; i-- > 0;) v = (v << 8) | std::to_integer<std::uint8_t>(p[i]);
    if (n > 0 && n < 8 && (std::to_integer<std::uint8_t>(p[n - 1]) & 0x80)) v |= ~std::uint64_t{0} << (8 * n);
    return static_cast<std::int64_t>(v);
  }

  void step(std::uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        const auto proto = u8();
        if (proto < 2 || proto > 4) throw fail(concat("pickle protocol ", int(proto), " is not supported (2–4 are)"));
        break;
      }
      case 0x95: take(8); break;  // FRAME (protocol 4): a length hint only
      case '.':                   // STOP
        if (stack_.size() != 1 || stack_.back() == kMark)
          throw fail(concat("STOP with ", stack_.size(), " stack entries (exactly one value expected)"));
        tree_.root_ = stack_.back();
        done_ = true;
        break;
      case '(': push(kMark); break;  // MARK
      case '0': pop(); break;        // POP
      case '1': pop_mark(); break;   // POP_MARK
      case '2': push(top()); break;  // DUP
      case 'N': push(PickleValue::make(PickleKind::None)); break;
      case 0x88: push(PickleValue::make(PickleKind::Bool, 1)); break;  // NEWTRUE
      case 0x89: push(PickleValue::make(PickleKind::Bool, 0)); break;  // NEWFALSE
      case 'J': push(PickleValue::make(PickleKind::Int, std::int64_t(std::int32_t(std::uint32_t(uint_le(4)))))); break;  // BININT
      case 'K': push(PickleValue::make(PickleKind::Int, std::int64_t(uint_le(1)))); break;  // BININT1
      case 'M': push(PickleValue::make(PickleKind::Int, std::int64_t(uint_le(2)))); break;  // BININT2
      case 0x8a: {  // LONG1: n-byte two's complement
        const std::uint64_t n = uint_le(1);
        if (n > 8) throw fail(concat("LONG1 of ", n, " bytes does not fit 64 bits"));
        push(PickleValue::make(PickleKind::Int, signed_le(take(n), n)));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        const std::byte* p = take(8);
        std::uint64_t u = 0;
        for (int i = 0; i < 8; ++i) u = (u << 8) | std::to_integer<std::uint8_t>(p[i]);
        double d;
        std::memcpy(&d, &u, 8);
        PickleValue v = PickleValue::make(PickleKind::Float);
        v.f = d;
        push(std::move(v));
        break;
      }
      case 'X': case 0x8c: case 0x8d:   // BINUNICODE (u32 length), SHORT_BINUNICODE (u8), BINUNICODE8 (u64)
      case 'T': case 'U':               // BINSTRING (u32), SHORT_BINSTRING (u8): Python 2 str
      case 'B': case 'C': case 0x8e: {  // BINBYTES (u32), SHORT_BINBYTES (u8), BINBYTES8 (u64)
        const int width = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
        PickleValue v = PickleValue::make((op == 'B' || op == 'C' || op == 0x8e) ? PickleKind::Bytes : PickleKind::String);
        v.s = bytes(uint_le(width));
        push(std::move(v));
        break;
      }
      case ')': push(make_seq(PickleKind::Tuple, {})); break;  // EMPTY_TUPLE
      case 't': push(make_seq(PickleKind::Tuple, pop_mark())); break;  // TUPLE
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        std::vector<std::uint32_t> items(op - 0x84);
        for (std::size_t i = items.size(); i-- > 0;) items[i] = pop();
        push(make_seq(PickleKind::Tuple, std::move(items)));
        break;
      }
      case ']': push(make_seq(PickleKind::List, {})); break;   // EMPTY_LIST
      case 'l': push(make_seq(PickleKind::List, pop_mark())); break;  // LIST
      case 'a': { const auto v = pop(); append(top(), std::span(&v, 1)); break; }  // APPEND
      case 'e': { const auto items = pop_mark(); append(top(), items); break; }   // APPENDS
      case '}': push(PickleValue::dict()); break;  // EMPTY_DICT
      case 'd': {  // DICT
        const auto kv = pop_mark();
        push(PickleValue::dict());
        set_items(top(), kv);
        break;
      }
      case 's': {  // SETITEM
        const auto v = pop(), k = pop();
        const std::uint32_t kv[2] = {k, v};
        set_items(top(), kv);
        break;
      }
      case 'u': { const auto kv = pop_mark(); set_items(top(), kv); break; }  // SETITEMS
      case 'q': memo_put(uint_le(1)); break;  // BINPUT
      case 'r': memo_put(uint_le(4)); break;  // LONG_BINPUT
      case 0x94: memo_put(memo_count_++); break;  // MEMOIZE
      case 'h': memo_get(uint_le(1)); break;  // BINGET
      case 'j': memo_get(uint_le(4)); break;  // LONG_BINGET
      case 'c': {  // GLOBAL "module\nname\n"
        std::string module = line();
        std::string name = line();
        global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const auto name = pop(), module = pop();
        if (at(module).kind != PickleKind::String || at(name).kind != PickleKind::String)
          throw fail("STACK_GLOBAL needs two str operands");
        global(at(module).s, at(name).s);
        break;
      }
      case 'Q': {  // BINPERSID
        const auto pid = pop();
        if (!hooks_.persistent_load) throw fail("persistent ids are not allowed here");
        push(hooks_.persistent_load(tree_, pid));
        break;
      }
      case 'R': {  // REDUCE
        const auto args = pop(), callable = pop();
        if (at(callable).kind == PickleKind::Opaque) {  // never called: the result is another placeholder
          push(opaque_from(callable));
          break;
        }
        if (at(callable).kind != PickleKind::Global)
          throw fail(concat("REDUCE of ", tree_.describe(callable), ", which is not a callable"));
        if (at(args).kind != PickleKind::Tuple) throw fail(concat("REDUCE of '", at(callable).s, "' with non-tuple arguments"));
        if (!hooks_.reduce) throw fail(concat("REDUCE of '", at(callable).s, "' is not allowed"));
        push(hooks_.reduce(tree_, callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args) — only of an opaque class, giving a placeholder
        const auto args = pop(), cls = pop();
        if (at(cls).kind != PickleKind::Opaque) throw fail(concat("NEWOBJ of ", tree_.describe(cls), " is not allowed"));
        (void)args;
        push(opaque_from(cls));
        break;
      }
      case 0x92: {  // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs) — likewise
        const auto kwargs = pop(), args = pop(), cls = pop();
        if (at(cls).kind != PickleKind::Opaque) throw fail(concat("NEWOBJ_EX of ", tree_.describe(cls), " is not allowed"));
        (void)kwargs, (void)args;
        push(opaque_from(cls));
        break;
      }
      case 'b': {  // BUILD
        const auto state = pop();
        if (at(top()).kind == PickleKind::Opaque) break;  // a placeholder's state is dropped, never applied
        if (!hooks_.build) throw fail(concat("BUILD on ", tree_.describe(top()), " is not allowed"));
        hooks_.build(tree_, top(), state);
        break;
      }
      default: {
        std::string name = "an unsupported opcode";
        switch (op) {
          case 'i': name = "INST"; break;
          case 'o': name = "OBJ"; break;
          case 0x82: case 0x83: case 0x84: name = "EXT"; break;
          case 'P': name = "PERSID (text)"; break;
          case 'I': case 'L': case 'F': case 'S': case 'V': name = "a text-mode (protocol 0) opcode"; break;
          case 'g': case 'p': name = "GET/PUT (text)"; break;
          case 0x8b: name = "LONG4"; break;
          case 0x8f: case 0x90: case 0x91: name = "a set opcode"; break;
          case 0x96: case 0x97: case 0x98: name = "an out-of-band buffer opcode"; break;
          default: break;
        }
        throw fail(concat("opcode 0x", "0123456789abcdef"[op >> 4], "0123456789abcdef"[op & 15], " (", name,
                          ") is not allowed"));
      }
    }
  }

  std::span<const std::byte> data_;
  std::string source_;
  const PickleHooks& hooks_;
  PickleLimits limits_;
  std::size_t pos_ = 0, op_pos_ = 0;
  bool done_ = false;
  PickleTree tree_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::uint32_t> memo_;
  std::uint64_t memo_count_ = 0;
  std::map<std::uint32_t, std::map<std::string, std::size_t>> dict_index_;
};

/// Runs the restricted unpickler over `data`. Errors name `source` and the byte offset.
inline PickleTree unpickle(std::span<const std::byte> data, const std::string& source, const PickleHooks& hooks,
                           PickleLimits limits = {}) {
  return Unpickler(data, source, hooks, limits).run();
}

}  // namespace mvar
