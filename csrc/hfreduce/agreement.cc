#include "hfreduce/agreement.h"

#include <cstdio>
#include <cstring>

#include "hfreduce/inter_node.h"
#include "hfreduce/reduce_kernels.h"

namespace hfreduce {

namespace {

// What leaders exchange over tree 0 before each collective (fixed size: one recv per child).
struct WireVerdict {
  int32_t ok;
  int32_t kind;
  int32_t rank;  // the rank whose call `desc` is
  int32_t pad;
  OpDesc desc;
  char msg[968];
};

std::string differs(uint64_t seq, int rank_a, const OpDesc& a, int rank_b, const OpDesc& b) {
  return "hfreduce: collective #" + std::to_string(seq) + " differs across ranks: rank " + std::to_string(rank_a) +
         " called " + describe(a) + " but rank " + std::to_string(rank_b) + " called " + describe(b);
}

}  // namespace

std::string describe(const OpDesc& d) {
  static const char* kinds[] = {"allreduce", "broadcast", "reduce"};
  static const char* ops[] = {"sum", "avg"};
  std::string s = std::string(kinds[d.kind % 3]) + " of " + std::to_string(d.count) + " " +
                  dtype_name(static_cast<DType>(d.dtype)) + " elements, op=" + ops[d.op % 2];
  if (d.kind != 0) s += ", root=" + std::to_string(d.root);
  if (d.part_of[0]) {
    s += " (a step of " + std::string(d.part_of, strnlen(d.part_of, sizeof(d.part_of))) + " of " +
         std::string(d.elem_dtype, strnlen(d.elem_dtype, sizeof(d.elem_dtype)));
    if (d.part_root >= 0) s += ", root " + std::to_string(d.part_root);
    s += ")";
  }
  return s;
}

bool same_call(const OpDesc& a, const OpDesc& b) {
  return a.kind == b.kind && a.dtype == b.dtype && a.op == b.op && a.root == b.root && a.count == b.count &&
         a.part_root == b.part_root && std::memcmp(a.part_of, b.part_of, sizeof(a.part_of)) == 0 &&
         std::memcmp(a.elem_dtype, b.elem_dtype, sizeof(a.elem_dtype)) == 0;
}

Verdict agree_local(const NodeShm& sh, uint64_t seq, int world_size, int rank) {
  Verdict v;
  const OpDesc& d0 = sh.slot(0).desc;
  for (int r = 1; r < sh.local_size(); ++r) {
    const OpDesc& dr = sh.slot(r).desc;
    if (!same_call(d0, dr)) {
      v.ok = false;
      v.msg = differs(seq, sh.global_rank(r), dr, sh.global_rank(0), d0);
      return v;
    }
  }
  const OpDesc& mine = sh.slot(sh.local_rank()).desc;
  if (mine.kind != 0 && (mine.root < 0 || mine.root >= world_size)) {
    v.ok = false;
    v.msg = "hfreduce: rank " + std::to_string(rank) + ": root " + std::to_string(mine.root) + " is not a rank of a " +
            std::to_string(world_size) + "-rank job";
  }
  return v;
}

Verdict agree_inter_node(Transport& tr, int num_nodes, int node, int rank, const OpDesc& desc, const Verdict& local,
                         uint64_t seq, double timeout_s) {
  WireVerdict v{};
  v.ok = local.ok;
  v.kind = static_cast<int32_t>(local.kind);
  v.rank = rank;
  v.desc = desc;
  std::snprintf(v.msg, sizeof(v.msg), "%s", local.msg.c_str());
  const TreeLinks tl = dtree(num_nodes, node, 0);
  for (int kid : tl.kids) {
    if (kid < 0) continue;
    WireVerdict k{};
    tr.recv(kid, kChanTree0, &k, sizeof(k), Deadline::after_s(timeout_s));
    if (!v.ok) continue;
    if (!k.ok) {
      v = k;
    } else if (!same_call(v.desc, k.desc)) {
      v.ok = 0;
      v.kind = static_cast<int32_t>(ErrorKind::kMismatch);
      std::snprintf(v.msg, sizeof(v.msg), "%s", differs(seq, k.rank, k.desc, v.rank, v.desc).c_str());
    }
  }
  if (tl.parent >= 0) {
    tr.send(tl.parent, kChanTree0, &v, sizeof(v), Deadline::after_s(timeout_s));
    tr.recv(tl.parent, kChanTree0, &v, sizeof(v), Deadline::after_s(timeout_s));
  }
  for (int kid : tl.kids)
    if (kid >= 0) tr.send(kid, kChanTree0, &v, sizeof(v), Deadline::after_s(timeout_s));
  Verdict out;
  out.ok = v.ok != 0;
  out.kind = static_cast<ErrorKind>(v.kind);
  if (!out.ok) out.msg = v.msg;
  return out;
}

void publish_verdict(NodeShm& sh, uint64_t seq, const Verdict& v) {
  NodeHeader* h = sh.hdr();
  h->verdict_ok = v.ok;
  h->verdict_kind = static_cast<int32_t>(v.kind);
  std::snprintf(h->verdict_msg, sizeof(h->verdict_msg), "%s", v.msg.c_str());
  h->verdict_seq.store(seq, std::memory_order_release);
  sh.wake();
}

Verdict await_verdict(NodeShm& sh, uint64_t seq, const std::function<std::string()>& what) {
  sh.wait([&] { return sh.hdr()->verdict_seq.load(std::memory_order_acquire) >= seq ? -1 : 0; }, what);
  Verdict v;
  if (!sh.hdr()->verdict_ok) {
    v.ok = false;
    v.msg = sh.hdr()->verdict_msg;
    v.kind = static_cast<ErrorKind>(sh.hdr()->verdict_kind);
  }
  return v;
}

}  // namespace hfreduce
