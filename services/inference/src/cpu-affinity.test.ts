import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { parseCpuList, pinToCpus } from "./cpu-affinity.js";

/** A thread's allowed CPUs, as /proc shows them. */
const allowed = (pid: number, tid = pid) =>
  /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8"))?.[1];
const hasTaskset = ["/usr/bin/taskset", "/bin/taskset"].some((p) => existsSync(p));

describe("parseCpuList", () => {
  it("reads single CPUs, ranges and lists", () => {
    expect(parseCpuList("1")).toEqual([1]);
    expect(parseCpuList("2-4")).toEqual([2, 3, 4]);
    expect(parseCpuList("0,2,4-5,2")).toEqual([0, 2, 4, 5]);
  });
  it("refuses anything else (the value reaches a command line)", () => {
    for (const bad of ["", "a", "1;reboot", "1 2", "-1", "1-", "3-1", "1,,2", "--all"]) {
      expect(() => parseCpuList(bad), bad).toThrow();
    }
  });
});

describe.skipIf(process.platform !== "linux" || !hasTaskset)("pinToCpus", () => {
  it("keeps every thread of a process, and the threads it starts later, on the listed CPUs", async () => {
    const last = String(availableParallelism() - 1);
    // A child that starts libuv's thread pool only when told to, as the service loads models after it is pinned.
    const child = spawn(
      process.execPath,
      [
        "-e",
        `process.stdin.once("data", () => require("node:crypto").pbkdf2("x", "y", 1, 8, "sha1", () => process.stdout.write("ran")));
         process.stdout.write("up");`,
      ],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    try {
      const pid = child.pid!;
      await new Promise((r) => child.stdout.once("data", r));
      const before = readdirSync(`/proc/${pid}/task`).length;
      pinToCpus(last, pid);
      const ran = new Promise<string>((r) => child.stdout.once("data", (d) => r(String(d))));
      child.stdin.write("go\n");
      expect(await ran).toBe("ran");
      const tasks = readdirSync(`/proc/${pid}/task`);
      expect(tasks.length).toBeGreaterThan(before);
      for (const tid of tasks) expect(allowed(pid, Number(tid)), `thread ${tid}`).toBe(last);
    } finally {
      child.kill();
    }
  });

  it("fails with a clear error for CPUs the process may not use, and leaves it as it was", () => {
    const was = allowed(process.pid);
    expect(() => pinToCpus("4095")).toThrow(/cannot keep the inference service on CPUs 4095/);
    expect(allowed(process.pid)).toBe(was);
  });
});
