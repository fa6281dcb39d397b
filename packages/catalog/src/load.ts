import { type FSWatcher, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse } from "yaml";
import { type Catalog, CatalogSchema, type ModelEntry } from "./schema.js";

/** The catalog file is missing, unreadable or invalid; the message lists every problem. */
export class CatalogError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CatalogError";
  }
}

/**
 * Parses and validates catalog text. Relative `source` paths of local models are resolved against `baseDir`.
 * Throws CatalogError naming every invalid field.
 */
export function parseCatalog(text: string, baseDir: string, origin = "catalog"): Catalog {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new CatalogError(`${origin}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  const result = CatalogSchema.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  - ${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new CatalogError(`${origin} is invalid:\n${lines.join("\n")}`);
  }
  const catalog = result.data;
  for (const m of catalog.models) {
    if (m.engine === "local" && !m.source.startsWith("hf:") && !isAbsolute(m.source)) {
      m.source = resolve(baseDir, m.source);
    }
  }
  return catalog;
}

/** Reads and validates the catalog file at `path`. */
export async function loadCatalog(path: string): Promise<Catalog> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new CatalogError(`cannot read catalog ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseCatalog(text, dirname(resolve(path)), path);
}

/** Looks a model up by id or alias. */
export function findModel(catalog: Catalog, name: string): ModelEntry | undefined {
  return catalog.models.find((m) => m.id === name || m.aliases.includes(name));
}

export interface CatalogWatcherOptions {
  /** Called with each new valid catalog. */
  onChange: (catalog: Catalog) => void;
  /** Called when a changed file is invalid; the previous catalog stays in force. */
  onError: (err: Error) => void;
  debounceMs?: number;
}

/**
 * Watches the catalog file (and its directory, so editors that replace the file and Kubernetes ConfigMap
 * symlink swaps are seen) and reloads it. An invalid edit never replaces a valid catalog.
 * Returns a function that stops watching.
 */
export function watchCatalog(path: string, options: CatalogWatcherOptions): () => void {
  const abs = resolve(path);
  const debounceMs = options.debounceMs ?? 200;
  let timer: NodeJS.Timeout | undefined;
  let lastText: string | undefined;
  const reload = async () => {
    try {
      const text = await readFile(abs, "utf8");
      if (text === lastText) return;
      lastText = text;
      options.onChange(parseCatalog(text, dirname(abs), abs));
    } catch (err) {
      options.onError(err as Error);
    }
  };
  void readFile(abs, "utf8").then(
    (t) => {
      lastText = t;
    },
    () => undefined,
  );
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(abs), { persistent: false }, () => {
      clearTimeout(timer);
      timer = setTimeout(() => void reload(), debounceMs);
    });
  } catch (err) {
    options.onError(err as Error);
  }
  return () => {
    clearTimeout(timer);
    watcher?.close();
  };
}
