import { describe, expect, it } from "vitest";
import { helpText, parseCommandLine } from "../args.js";
import { describe as describeJob } from "./jobs.commands.js";

describe("tokenmesh jobs", () => {
  it("parses submit from a prompt, with metadata, a callback and --wait", () => {
    const { command } = parseCommandLine([
      "jobs",
      "submit",
      "--model",
      "gpt",
      "--prompt",
      "hi there",
      "--metadata",
      "run=7,team=x",
      "--callback-url",
      "https://hooks.example.com/j",
      "--wait",
    ]);
    expect(command).toEqual({
      name: "jobs submit",
      batch: false,
      wait: true,
      body: {
        endpoint: "/v1/chat/completions",
        request: { model: "gpt", messages: [{ role: "user", content: "hi there" }] },
        callback_url: "https://hooks.example.com/j",
        metadata: { run: "7", team: "x" },
      },
    });
  });

  it("parses an embeddings submit, a body file, and the id commands", () => {
    expect(parseCommandLine(["jobs", "submit", "--model", "e", "--input", "x"]).command).toMatchObject({
      body: { endpoint: "/v1/embeddings", request: { model: "e", input: "x" } },
    });
    expect(parseCommandLine(["jobs", "submit", "--body", "b.json", "--endpoint", "embeddings"]).command).toMatchObject({
      body: { endpoint: "/v1/embeddings", request: { $file: "b.json" } },
    });
    for (const c of ["get", "cancel", "watch"]) {
      expect(parseCommandLine(["jobs", c, "job_1"]).command).toEqual({ name: `jobs ${c}`, id: "job_1" });
    }
    expect(parseCommandLine(["jobs", "list", "--limit", "5"]).command).toEqual({ name: "jobs list", limit: 5 });
  });

  it("refuses a submit without exactly one request source", () => {
    expect(() => parseCommandLine(["jobs", "submit", "--model", "m"])).toThrow(/one of --prompt/);
    expect(() => parseCommandLine(["jobs", "submit", "--prompt", "p", "--body", "f"])).toThrow(/one of/);
    expect(() => parseCommandLine(["jobs", "get"])).toThrow(/missing <id>/);
  });

  it("lists the jobs commands in help", () => {
    expect(helpText()).toContain("jobs submit");
    expect(helpText(["jobs", "watch"])).toContain("live status line");
  });

  it("describes a job on one line", () => {
    expect(
      describeJob(
        {
          id: "job_1",
          object: "job",
          endpoint: "/v1/chat/completions",
          status: "running",
          created_at: 100,
          started_at: 101,
        },
        103.5,
      ),
    ).toBe("job_1  running    /v1/chat/completions  ran 2.5s\n");
    expect(
      describeJob(
        {
          id: "job_2",
          object: "job",
          endpoint: "/v1/embeddings",
          status: "failed",
          created_at: 100,
          started_at: 100,
          finished_at: 101,
          error: { message: "boom" },
        },
        200,
      ),
    ).toBe("job_2  failed     /v1/embeddings  ran 1.0s: boom\n");
  });
});
