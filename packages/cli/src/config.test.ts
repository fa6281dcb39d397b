import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_GATEWAY_URL, DEFAULT_NATS_URL, loadConfig } from "./config.js";
import { CliError, UsageError } from "./errors.js";

describe("loadConfig", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), "tokenmesh-cli-config-"));
    dirs.push(d);
    return d;
  };

  it("defaults the gateway and NATS URLs", () => {
    const c = loadConfig({}, {}, tempDir());
    expect(c.gatewayUrl).toBe(DEFAULT_GATEWAY_URL);
    expect(c.natsUrl).toBe(DEFAULT_NATS_URL);
    expect(c.adminKey).toBeUndefined();
  });

  it("prefers --url over TOKENMESH_URL and keeps a path prefix without the trailing slash", () => {
    const env = { TOKENMESH_URL: "http://env:1/" };
    expect(loadConfig({}, env, tempDir()).gatewayUrl).toBe("http://env:1");
    expect(loadConfig({ url: "https://flag:2/tm/" }, env, tempDir()).gatewayUrl).toBe("https://flag:2/tm");
  });

  it("rejects a URL that is not http(s): a usage error for --url, a config error for the variable", () => {
    expect(() => loadConfig({ url: "nats://x" }, {}, tempDir())).toThrow(UsageError);
    const err = (() => {
      try {
        loadConfig({}, { TOKENMESH_URL: "not a url" }, tempDir());
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CliError);
    expect(err).not.toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/^TOKENMESH_URL:/);
  });

  it("finds .tokenmesh/admin-key in the working directory or a parent, the variable first", () => {
    const root = tempDir();
    mkdirSync(join(root, ".tokenmesh"));
    writeFileSync(join(root, ".tokenmesh", "admin-key"), "sk-admin-file\n");
    const nested = join(root, "a", "b");
    mkdirSync(nested, { recursive: true });

    const fromFile = loadConfig({}, {}, nested);
    expect(fromFile.adminKey).toBe("sk-admin-file");
    expect(fromFile.adminKeySource).toEqual({ file: join(root, ".tokenmesh", "admin-key") });

    const fromEnv = loadConfig({}, { TOKENMESH_ADMIN_KEY: "sk-admin-env" }, nested);
    expect(fromEnv.adminKey).toBe("sk-admin-env");
    expect(fromEnv.adminKeySource).toBe("TOKENMESH_ADMIN_KEY");
  });

  it("takes NATS_URL as given", () => {
    expect(loadConfig({}, { NATS_URL: "nats://a:1,nats://b:2" }, tempDir()).natsUrl).toBe("nats://a:1,nats://b:2");
  });
});
