import { Writable } from "node:stream";
import { freePort, waitFor } from "@tokenmesh/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createSupervisor } from "../supervisor.mjs";

// A tiny service: answers every request with its name and pid; on SIGTERM closes and exits 0.
const httpChild = `
const http = require("node:http");
const server = http.createServer((req, res) => res.end(process.env.NAME + " " + process.pid));
server.listen(Number(process.env.PORT), "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`;

type Supervisor = ReturnType<typeof createSupervisor>;
const running: Supervisor[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

function supervise(options: Parameters<typeof createSupervisor>[0] = {}) {
  const logs: string[] = [];
  const output: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      output.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  });
  const supervisor = createSupervisor({ log: (l) => logs.push(l), stdout: sink, stderr: sink, ...options });
  running.push(supervisor);
  return { supervisor, logs, output };
}

function statusOf(supervisor: Supervisor, name: string) {
  const status = supervisor.status().find((s) => s.name === name);
  if (!status) throw new Error(`no child ${name}`);
  return status;
}

async function answer(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/`);
  return res.text();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("createSupervisor", () => {
  it("restarts a SIGKILLed child until it answers again, while the others keep serving untouched", async () => {
    const { supervisor, logs } = supervise({ initialDelayMs: 20 });
    const ports: Record<string, number> = {};
    for (const name of ["a", "b", "c"]) {
      ports[name] = await freePort();
      supervisor.start({
        name,
        cmd: process.execPath,
        args: ["-e", httpChild],
        env: { ...process.env, NAME: name, PORT: String(ports[name]) },
        readyUrl: `http://127.0.0.1:${ports[name]}/`,
      });
    }
    for (const name of ["a", "b", "c"]) expect(await supervisor.waitReady(name, 10_000)).toBe(true);
    const before = Object.fromEntries(supervisor.status().map((s) => [s.name, s.pid]));

    process.kill(before["b"]!, "SIGKILL");
    expect(await answer(ports["a"]!)).toBe(`a ${before["a"]}`);
    expect(await answer(ports["c"]!)).toBe(`c ${before["c"]}`);
    const reply = await waitFor(
      async () => {
        const text = await answer(ports["b"]!);
        return text !== `b ${before["b"]}` && text;
      },
      { timeoutMs: 5_000, description: "b answering from a new process" },
    );

    const b = statusOf(supervisor, "b");
    expect(reply).toBe(`b ${b.pid}`);
    expect(b).toMatchObject({ state: "running", restarts: 1, lastExit: { code: null, signal: "SIGKILL" } });
    expect(b.pids).toEqual([before["b"], b.pid]);
    for (const name of ["a", "c"]) {
      expect(statusOf(supervisor, name)).toMatchObject({ state: "running", restarts: 0, pid: before[name] });
    }
    expect(logs).toContainEqual(expect.stringMatching(/^b exited \(SIGKILL\) after [\d.]+ s; restart #1 in 20 ms$/));
    expect(logs).toContainEqual(expect.stringMatching(/^b restarted \(pid \d+, restart #1\)$/));
    await waitFor(() => logs.some((l) => /^b is ready again, [\d.]+ s after restart #1$/.test(l)), {
      description: "the readiness log line",
    });

    const final = await supervisor.stop();
    expect(final.map((s) => [s.name, s.state, s.restarts])).toEqual([
      ["a", "stopped", 0],
      ["b", "stopped", 1],
      ["c", "stopped", 0],
    ]);
    for (const s of final) {
      expect(s.lastExit).toEqual({ code: 0, signal: null });
      for (const pid of s.pids) expect(alive(pid)).toBe(false);
    }
    expect(logs.at(-1)).toBe("restarts this run: b 1");
  });

  it("backs off exponentially up to the cap and keeps retrying a crash-looping child", async () => {
    const { supervisor, logs, output } = supervise({ initialDelayMs: 10, maxDelayMs: 40 });
    supervisor.start({ name: "crashy", cmd: process.execPath, args: ["-e", `console.error("boom"); process.exit(3)`] });
    supervisor.start({ name: "missing", cmd: "/nonexistent/binary" });

    await waitFor(() => statusOf(supervisor, "crashy").restarts >= 6 && statusOf(supervisor, "missing").restarts >= 6, {
      description: "six restarts of each",
    });
    const delays = (name: string) =>
      logs
        .filter((l) => l.startsWith(`${name} `) && l.includes(" in "))
        .slice(0, 6)
        .map((l) => Number(/in (\d+) ms$/.exec(l)?.[1]));
    expect(delays("crashy")).toEqual([10, 20, 40, 40, 40, 40]);
    expect(delays("missing")).toEqual([10, 20, 40, 40, 40, 40]);
    expect(logs).toContainEqual(expect.stringMatching(/^crashy exited \(code 3\) after/));
    expect(logs).toContainEqual(
      expect.stringMatching(/^missing could not start \(spawn \/nonexistent\/binary ENOENT\)/),
    );
    expect(output).toContainEqual("crashy   | boom");
  });

  it("starts the backoff over once a child has stayed up for resetAfterMs", async () => {
    const resetAfterMs = 1_000;
    const { supervisor, logs } = supervise({ initialDelayMs: 10, resetAfterMs });
    const forever = `setInterval(() => {}, 1000)`;
    supervisor.start({ name: "x", cmd: process.execPath, args: ["-e", forever] });

    for (const restart of [1, 2]) {
      await waitFor(
        () => statusOf(supervisor, "x").state === "running" && statusOf(supervisor, "x").restarts === restart - 1,
      );
      process.kill(statusOf(supervisor, "x").pid!, "SIGKILL");
      await waitFor(() => statusOf(supervisor, "x").restarts === restart);
    }
    // Two quick crashes: 10 ms, then 20 ms.
    expect(logs.filter((l) => l.includes(" in ")).map((l) => /in (\d+) ms$/.exec(l)?.[1])).toEqual(["10", "20"]);

    await waitFor(() => Date.now() - (statusOf(supervisor, "x").startedAt ?? Date.now()) > resetAfterMs, {
      description: "x up for resetAfterMs",
    });
    process.kill(statusOf(supervisor, "x").pid!, "SIGKILL");
    await waitFor(() => statusOf(supervisor, "x").restarts === 3);
    expect(logs.filter((l) => l.includes(" in ")).at(-1)).toMatch(/restart #3 in 10 ms$/);
  });

  it("stops tier by tier, SIGKILLs a child that ignores SIGTERM, and restarts nothing once stopping", async () => {
    const { supervisor, logs, output } = supervise({ initialDelayMs: 60_000, stopTimeoutMs: 300 });
    const stamp = (what: string) => `console.log("${what} " + Date.now())`;
    const child = (name: string, tier: number, onTerm: string) =>
      supervisor.start({
        name,
        cmd: process.execPath,
        args: ["-e", `process.on("SIGTERM", () => { ${onTerm} }); console.log("up"); setInterval(() => {}, 1000)`],
        tier,
      });
    child("infra", 0, `${stamp("infra-term")}; process.exit(0)`);
    // Exits 1 on SIGTERM, like a crash: must not be restarted.
    child(
      "failing",
      1,
      `${stamp("failing-term")}; setTimeout(() => { ${stamp("failing-exit")}; process.exit(1) }, 100)`,
    );
    child("stubborn", 1, `console.log("ignoring SIGTERM")`);
    supervisor.start({ name: "looping", cmd: process.execPath, args: ["-e", "process.exit(2)"], tier: 1 });

    await waitFor(
      () =>
        output.filter((l) => l.endsWith("| up")).length === 3 && statusOf(supervisor, "looping").state === "backoff",
      {
        description: "three children up and one in backoff",
      },
    );
    const pids = supervisor.status().flatMap((s) => s.pids);

    const final = await supervisor.stop();
    expect(supervisor.stopping).toBe(true);
    expect(Object.fromEntries(final.map((s) => [s.name, [s.state, s.restarts, s.lastExit]]))).toEqual({
      infra: ["stopped", 0, { code: 0, signal: null }],
      failing: ["stopped", 0, { code: 1, signal: null }],
      stubborn: ["stopped", 0, { code: null, signal: "SIGKILL" }],
      looping: ["stopped", 0, { code: 2, signal: null }],
    });
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(logs).toContain("stubborn did not exit within 300 ms of SIGTERM; sending SIGKILL");
    expect(output).toContain("stubborn | ignoring SIGTERM");

    const at = (what: string) =>
      Number(
        output
          .find((l) => l.includes(`| ${what} `))
          ?.split(" ")
          .at(-1),
      );
    expect(at("failing-term")).toBeGreaterThan(0);
    expect(at("infra-term")).toBeGreaterThanOrEqual(at("failing-exit"));

    expect(await supervisor.stop()).toEqual(final);
    expect(() => supervisor.start({ name: "late", cmd: process.execPath })).toThrow(/stopping/);
  });
});
