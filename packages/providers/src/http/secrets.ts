/**
 * Reads a provider key by the name of the env var holding it. Engines take this as a constructor option so that
 * tests and other key stores can supply keys without touching the process environment.
 */
export type GetSecret = (name: string) => string | undefined;

/**
 * The default GetSecret: the process environment. This is the one environment read outside a config.ts, on
 * purpose: the catalog names the variable per model and may change on reload, so it cannot be parsed at start-up.
 * Empty values count as missing.
 */
export const envSecret: GetSecret = (name) => {
  const value = process.env[name];
  return value === undefined || value === "" ? undefined : value;
};
