"""kube-ipam ADD/DEL of one more pod when the dynamic range of a /16 is 1%, 50%, 90%, 99% and 100% full.

    .venv/bin/python bench/fill.py [--samples N] [--members 1|3] [--levels 1,50,90,99,100] [--json]

The range is the seed's net1 one (multipy.testing.topology.SEED_KUBE_IPAM: subnet 10.188.0.0/16,
dynamic 10.188.1.0-10.188.255.254, 65,279 addresses). A real etcd is started here (one member on
loopback by default, data on tmpfs). The range is filled twice, level after level:

  random   the taken addresses spread at random over the range (one seeded permutation)
  packed   the taken addresses in one contiguous block from rangeStart: a search that starts
           inside it (99 times in 100 at 99%) must get past it, the worst case for a block-wise search

The fill goes through kube-ipam's own store (delegates/kube_ipam/store.py): Store.reserve with 60
addresses and one owner per transaction (etcd's 128-operation limit), then Store.note_full for the
blocks that are full, the hints an ADD that filled them would have written. At each level
`--samples` pods are added and deleted, one at a time, each with a fresh container ID:
KubeIpam.add / .delete called in this process with one etcd client kept throughout (as a daemon
keeps it), so the figures are kube-ipam's search and etcd round trips without process start-up
(an exec'd plugin adds its constant start-up, see bench/kube_ipam.py). Every etcd call is counted.

Checks: every ADD returns an address of the range that the fill does not hold; at 100% the ADD
fails with code 11 naming the range, and leaves no owner and no lease; after each level the pool
holds exactly the filled addresses (nothing leaked by the samples). A "cold index" row times the
first ADD at 99% packed after the hints were deleted (a pool filled by a kube-ipam without them).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import sys
import time

from add_del import median

from delegates.kube_ipam.pods import ANNOTATIONS_CAPABILITY
from delegates.kube_ipam.records import DYNAMIC, Lease, Owner
from delegates.kube_ipam.store import Store
from multipy.cni.env import Environment
from multipy.cni.errors import TRY_AGAIN_LATER, CNIError
from multipy.testing.etcd import ETCD_BIN, EtcdCluster, EtcdStartError
from multipy.testing.topology import SEED_KUBE_IPAM

NETWORK = "k8snet2"
SUBNET = ipaddress.ip_network(SEED_KUBE_IPAM["subnet"])
FIRST = ipaddress.ip_address(SEED_KUBE_IPAM["rangeStart"])
LAST = ipaddress.ip_address(SEED_KUBE_IPAM["rangeEnd"])
GATEWAY = ipaddress.ip_address(SEED_KUBE_IPAM["gateway"])
BATCH = 60  # addresses per fill transaction: 1 + 2 x 60 compares, 61 puts (etcd allows 128 of each)
LEVELS = (1, 50, 90, 99, 100)
# Published figures for the same question elsewhere: none. whereabouts reads its whole IPPool (every
# allocation of the range) for each ADD and takes the lowest free offset; host-local walks from its
# last reserved address, one file stat per taken address.


class BenchError(RuntimeError):
    pass


class Counting:
    """An etcd client that counts reads and transactions (this benchmark's, never the plugin's hot path)."""

    def __init__(self, etcd) -> None:
        self.etcd = etcd
        self.reads = self.txns = self.lost = 0

    def get(self, *a, **kw):
        self.reads += 1
        return self.etcd.get(*a, **kw)

    def get_prefix(self, *a, **kw):
        self.reads += 1
        return self.etcd.get_prefix(*a, **kw)

    def txn(self, *a, **kw):
        self.txns += 1
        done = self.etcd.txn(*a, **kw)
        self.lost += not done
        return done

    def __getattr__(self, name):
        return getattr(self.etcd, name)

    def snapshot(self) -> tuple[int, int]:
        return self.reads, self.txns


def addresses() -> list[ipaddress.IPv4Address]:
    """Every address the dynamic range can hand out, in order."""
    return [ipaddress.ip_address(i) for i in range(int(FIRST), int(LAST) + 1) if i != int(GATEWAY)]


def conf(etcd_config: dict) -> dict:
    ipam = {**json.loads(json.dumps(SEED_KUBE_IPAM)), "etcdConfig": etcd_config}
    return {"cniVersion": "1.0.0", "name": NETWORK, "type": "macvlan", "ipam": ipam,
            "capabilities": {ANNOTATIONS_CAPABILITY: True},
            "runtimeConfig": {ANNOTATIONS_CAPABILITY: {"app": "fill"}}}  # fmt: skip


def inv(command: str, cid: str, n: int) -> Environment:
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=fill-{n};K8S_POD_UID=uid-fill-{n}"
    return Environment(command, cid, "/run/netns/fill-bench", "net1", args)


class Filler:
    """Takes addresses through the store's own interface, as many ADDs would have."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batches = 0
        self.taken: set[ipaddress.IPv4Address] = set()

    def take(self, ips: list) -> None:
        for i in range(0, len(ips), BATCH):
            chunk = ips[i:i + BATCH]
            self.batches += 1
            cid = f"fill-{self.batches}"
            owner = Owner(cid, "net1", NETWORK, tuple(chunk), "default/fill")
            leases = [Lease(ip, NETWORK, DYNAMIC, "default/fill", "uid-fill", cid, "net1") for ip in chunk]
            if not self.store.reserve(owner, leases, [None] * len(leases)):
                raise BenchError(f"fill transaction {cid} refused: an address was taken already")
            self.taken.update(chunk)
        self.hint_full()

    def hint_full(self) -> None:
        """The full/ hints of the full blocks and regions, as the ADDs that filled them would have written."""
        per_block: dict[int, int] = {}
        for ip in self.taken:
            per_block[int(ip) >> 8] = per_block.get(int(ip) >> 8, 0) + 1
        full, capacities = set(), {}
        for block in range(int(FIRST) >> 8, (int(LAST) >> 8) + 1):
            low, high = max(block << 8, int(FIRST)), min((block << 8) | 0xFF, int(LAST))
            capacities[block] = high - low + 1 - (low <= int(GATEWAY) <= high)
            if per_block.get(block, 0) >= capacities[block]:
                full.add(block)
        regions = {b >> 4 for b in full
                   if all(c in full or not capacities.get(c) for c in range((b >> 4) << 4, ((b >> 4) << 4) + 16))}
        keys = [self.store.keys.block_hint(b << 8) for b in sorted(full)]
        keys += [self.store.keys.region_hint(r << 12) for r in sorted(regions)]
        self.store.note_full(keys, f"{FIRST}-{LAST}")

    def wipe(self) -> None:
        self.store.etcd.delete_prefix(self.store.keys.pool)
        self.taken.clear()


def compact(etcd: EtcdCluster) -> None:
    """Drops the history the fill wrote, as a cluster's periodic compaction (Kubernetes: 5 min) does:
    otherwise every later range read walks the fill's revisions and the figures measure the fill."""
    status = json.loads(etcd.etcdctl("endpoint", "status", "-w", "json", endpoints=etcd.endpoints[:1]))
    etcd.etcdctl("compact", str(status[0]["Status"]["header"]["revision"]), "--physical")


def measure(plugin, counting: Counting, cfg: dict, level: int, samples: int, filler: Filler, tag: str) -> dict:
    out: dict = {"ADD": [], "DEL": [], "add_reads": [], "add_txns": [], "del_reads": [], "del_txns": []}
    full = level == 100
    for n in range(samples):
        cid = f"{tag}-{level}-{n}"
        before = counting.snapshot()
        start = time.perf_counter()
        try:
            result = plugin.add(inv("ADD", cid, n), cfg)
            error = None
        except CNIError as e:
            result, error = None, e
        add_ms = (time.perf_counter() - start) * 1000
        after = counting.snapshot()
        if full:
            if error is None:
                raise BenchError(f"ADD at 100% returned {result.to_json('1.0.0')}, not an exhaustion error")
            if error.code != TRY_AGAIN_LATER or f"{FIRST}-{LAST}" not in error.msg:
                raise BenchError(f"ADD at 100%: code {error.code} {error.msg!r}: not code 11 naming the range")
            out["error"] = {"code": error.code, "msg": error.msg}
            if filler.store.owner(cid, "net1") is not None:  # leases: counted after the level
                raise BenchError(f"the refused ADD {cid} left its owner index behind")
        else:
            if error is not None:
                raise BenchError(f"ADD at {level}%: {error.code} {error.msg}")
            ip = result.ips[0].address.ip
            if not FIRST <= ip <= LAST or ip == GATEWAY or ip in filler.taken:
                raise BenchError(f"ADD at {level}% returned {ip}: outside the range or already taken")
        start = time.perf_counter()
        plugin.delete(inv("DEL", cid, n), cfg)
        del_ms = (time.perf_counter() - start) * 1000
        done = counting.snapshot()
        out["ADD"].append(add_ms)
        out["DEL"].append(del_ms)
        out["add_reads"].append(after[0] - before[0])
        out["add_txns"].append(after[1] - before[1])
        out["del_reads"].append(done[0] - after[0])
        out["del_txns"].append(done[1] - after[1])
    left = len(filler.store.etcd.get_prefix(filler.store.keys.ips, True))
    owners = len(filler.store.etcd.get_prefix(filler.store.keys.owners, True))
    if left != len(filler.taken) or owners != filler.batches_alive:
        raise BenchError(f"after {level}%: {left} leases and {owners} owners in etcd, "
                         f"expected {len(filler.taken)} and {filler.batches_alive}")  # fmt: skip
    return out


def bench(args) -> dict:
    from delegates.kube_ipam import KubeIpam
    from multipy.clients.pool import ClientPool
    from multipy.plugins.contract import Services

    etcd = EtcdCluster(members=args.members)
    results: dict = {"levels": args.levels, "members": args.members}
    try:
        etcd.start()
        pool = ClientPool()
        try:
            counting: Counting | None = None

            def factory(*a, **kw):
                nonlocal counting
                if counting is None:
                    counting = Counting(pool.etcd(*a, **kw))
                return counting

            plugin = KubeIpam(Services(etcd=factory, kube=pool.kube))
            cfg = conf(etcd.etcd_config())
            everything = addresses()
            rng = random.Random(16)
            orders = {"random": rng.sample(everything, len(everything)), "packed": everything}
            plugin.add(inv("ADD", "warm", 0), cfg)  # connects; uncounted
            plugin.delete(inv("DEL", "warm", 0), cfg)
            store = Store(counting, SUBNET)
            for layout, order in orders.items():
                filler = Filler(store)
                filler.batches_alive = 0
                filled = 0
                rows = results[layout] = {}
                for level in args.levels:
                    target = len(everything) if level == 100 else round(len(everything) * level / 100)
                    start = time.perf_counter()
                    filler.take(order[filled:target])
                    filler.batches_alive = filler.batches
                    compact(etcd)
                    fill_s = time.perf_counter() - start
                    filled = target
                    rows[level] = measure(plugin, counting, cfg, level, args.samples, filler, f"{layout[0]}")
                    rows[level]["fill_s"] = fill_s
                    rows[level]["taken"] = filled
                    print(f"  {layout} {level}%: {filled} taken (fill {fill_s:.1f} s), ADD median "
                          f"{median(rows[level]['ADD']):.2f} ms", file=sys.stderr)  # fmt: skip
                    if layout == "packed" and level == 99:
                        # A pool filled without hints: the first ADD walks the full blocks once and writes them.
                        store.etcd.delete_prefix(store.keys.full)
                        before = counting.snapshot()
                        t = time.perf_counter()
                        plugin.add(inv("ADD", "cold", 0), cfg)
                        cold_ms = (time.perf_counter() - t) * 1000
                        reads = counting.snapshot()[0] - before[0]
                        t = time.perf_counter()
                        plugin.add(inv("ADD", "cold2", 1), cfg)
                        next_ms = (time.perf_counter() - t) * 1000
                        next_reads = counting.snapshot()[0] - before[0] - reads
                        plugin.delete(inv("DEL", "cold", 0), cfg)
                        plugin.delete(inv("DEL", "cold2", 1), cfg)
                        results["cold"] = {"ms": cold_ms, "reads": reads, "next_ms": next_ms, "next_reads": next_reads}
                filler.wipe()
            left = etcd.keys("/multipy/")
            if left:
                raise BenchError(f"etcd holds {len(left)} keys after the wipe: {sorted(left)[:5]}")
        finally:
            pool.close()
    finally:
        etcd.close()
    return results


def report(results: dict, args, out) -> None:
    def p(*a):
        print(*a, file=out)

    p(f"\nkube-ipam: one more pod at each fill level of 10.188.1.0-10.188.255.254 (65,279 addresses of a /16), "
      f"{args.samples} ADD+DEL per level,")
    p(f"  in process, one etcd client kept; etcd: {results['members']} member(s) on loopback, data on tmpfs; ms")
    p(f"  {'layout':8}{'fill':>6}{'taken':>8}{'ADD p50':>9}{'p99':>8}{'max':>8}{'DEL p50':>9}{'p99':>8}"
      f"{'reads/ADD':>10}{'txn/ADD':>8}{'reads/DEL':>10}{'vs 1%':>7}")  # fmt: skip
    for layout in ("random", "packed"):
        rows = results[layout]
        base = median(rows[args.levels[0]]["ADD"])
        for level in args.levels:
            r = rows[level]
            p(f"  {layout:8}{level:>5}%{r['taken']:>8}{median(r['ADD']):9.2f}{pct(r['ADD'], 99):8.2f}"
              f"{max(r['ADD']):8.2f}{median(r['DEL']):9.2f}{pct(r['DEL'], 99):8.2f}"
              f"{sum(r['add_reads']) / len(r['add_reads']):10.1f}{sum(r['add_txns']) / len(r['add_txns']):8.1f}"
              f"{sum(r['del_reads']) / len(r['del_reads']):10.1f}{median(r['ADD']) / base:6.2f}x")  # fmt: skip
    for layout in ("random", "packed"):
        if 100 in results[layout]:
            e = results[layout][100].get("error")
            if e:
                p(f"  at 100% ({layout}): code {e['code']}: {e['msg']}")
    if "cold" in results:
        c = results["cold"]
        p(f"  cold index, 99% packed, hints deleted: first ADD {c['ms']:.1f} ms / {c['reads']} reads "
          f"(walks the full blocks once and hints them), the next {c['next_ms']:.1f} ms / {c['next_reads']} reads")
    p("  reads per ADD: the attachment's owner key, the full-region hints, the full-block hints of one region,")
    p("  one block (keys only); at 100% the whole pool is read once (keys only) before the range is called full.")
    p("  DEL: the owner key, its lease, one transaction. Fill: Store.reserve, 60 addresses per transaction.")


def pct(samples: list[float], q: int) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, -(-q * len(ordered) // 100) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=30, help="ADD+DEL per level (default 30)")
    parser.add_argument("--members", type=int, default=1, choices=(1, 3), help="etcd members (default 1)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="fill levels in %% (ascending)")
    parser.add_argument("--json", action="store_true", help="raw samples as JSON on stdout; the table on stderr")
    args = parser.parse_args()
    try:
        args.levels = [int(v) for v in args.levels.split(",")]
    except ValueError:
        parser.error("--levels: comma-separated integers")
    if args.levels != sorted(args.levels) or not all(0 < v <= 100 for v in args.levels) or args.samples < 1:
        parser.error("--levels must ascend within 1..100, --samples be positive")
    if not os.access(ETCD_BIN, os.X_OK):
        parser.error(f"{ETCD_BIN} missing (install Debian's etcd-server, or set ETCD_BIN)")
    try:
        results = bench(args)
    except (BenchError, EtcdStartError) as err:
        print(f"benchmark aborted: {err}", file=sys.stderr)
        return 1
    report(results, args, sys.stderr if args.json else sys.stdout)
    if args.json:
        json.dump({"args": vars(args), "results": results}, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
