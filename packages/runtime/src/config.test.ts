import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError, env, parseEnv } from "./config.js";

describe("parseEnv", () => {
  const schema = z.object({ DB_URL: env.url("postgres://localhost/x", ["postgres:"]), PORT: env.port(1) });

  it("lists every bad variable, and never shows a URL's password or a secret's value", () => {
    let err: unknown;
    try {
      parseEnv(schema, { DB_URL: "mysql://admin:hunter2@db/x", PORT: "-1" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).toContain("DB_URL");
    expect(message).toContain("PORT");
    expect(message).not.toContain("hunter2");
    expect(message).toContain("mysql://admin:***@db/x");
  });
});
