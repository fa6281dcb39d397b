import { execFileSync } from "node:child_process";

/** A Linux CPU list as `taskset -c` and cpusets write it: `1`, `2-7`, `0,2,4-5`. */
export const CPU_LIST = /^\d{1,4}(-\d{1,4})?(,\d{1,4}(-\d{1,4})?)*$/;

/** The CPUs a list names, in order, without duplicates; throws on a descending range. */
export function parseCpuList(list: string): number[] {
  if (!CPU_LIST.test(list))
    throw new Error(`not a CPU list: ${JSON.stringify(list)} (expected e.g. 1, 2-7 or 0,2,4-5)`);
  const cpus = new Set<number>();
  for (const part of list.split(",")) {
    const [a, b = a] = part.split("-").map(Number) as [number, number?];
    if (b < a) throw new Error(`descending CPU range ${part}`);
    for (let c = a; c <= b; c++) cpus.add(c);
  }
  return [...cpus];
}

/**
 * Keeps every thread of process `pid` (default: this one) on the CPUs of `list`, with util-linux's `taskset`
 * (Linux only). Threads started later (ggml's workers, libuv's pool) inherit the mask of the thread that starts
 * them, so pinning at start-up, before any model loads, covers them all.
 *
 * Why the inference service offers it: a local model's generation loop hands every token between the event loop
 * and the decoding thread. On a 2-vCPU VM, back to back, the tiny test model generated one stream at 1,740 tokens/s
 * with both threads kept on one core against 1,290 when the scheduler spread them over both, and a process spending
 * 8 % of a core in 2 ms bursts slowed it 5 % instead of 26 % (bench/inference/README.md). On Kubernetes the
 * kubelet's static CPU manager gives a Guaranteed pod exclusive cores instead; this is for hosts without one.
 */
export function pinToCpus(list: string, pid = process.pid): void {
  parseCpuList(list);
  try {
    execFileSync("taskset", ["--all-tasks", "--pid", "--cpu-list", list, String(pid)], {
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 5_000,
    });
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer };
    const why =
      e.code === "ENOENT" ? "taskset (util-linux) is not installed" : e.stderr?.toString().trim() || String(err);
    throw new Error(`cannot keep the inference service on CPUs ${list}: ${why}`);
  }
}
