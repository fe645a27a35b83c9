#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_SOCKHASH); __uint(max_entries, 16); __type(key, __u64); __type(value, __u64);} socks SEC(".maps");
SEC("sk_msg") int msg_pass(struct sk_msg_md *m) { return SK_PASS; }
SEC("sk_skb/stream_verdict") int verdict_pass(struct __sk_buff *skb) { return SK_PASS; }
char LICENSE[] SEC("license") = "GPL";
