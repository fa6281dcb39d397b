import { lookup } from "node:dns/promises";
import { stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { resolveModelFile } from "node-llama-cpp";

/** Why a model source could not be turned into a local file; `message` is meant for operators (status detail). */
export class ModelSourceError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ModelSourceError";
  }
}

export interface ResolveSourceOptions {
  /** Directory `hf:` models are downloaded to and looked up in. */
  modelsDir: string;
  /** Directory relative GGUF paths are resolved against. */
  baseDir: string;
  /** Abort the download when no progress was seen for this long (node-llama-cpp retries offline for minutes). */
  stallTimeoutMs: number;
  onProgress?(downloaded: number, total: number): void;
  onDownloadStart?(): void;
}

/** Whether a catalog `source` names a Hugging Face file rather than a path. */
export function isHuggingFaceSource(source: string): boolean {
  return source.startsWith("hf:");
}

/**
 * Turns a catalog `source` into the path of a GGUF file on disk.
 *
 * A path must exist (relative paths resolve against `baseDir`). An `hf:<user>/<repo>/<file>.gguf` source is used
 * from `modelsDir` when already there, else downloaded into it. Rejects with ModelSourceError whose message tells
 * the operator what to do, e.g. where to put the file when there is no internet.
 */
export async function resolveModelSource(source: string, opts: ResolveSourceOptions): Promise<string> {
  if (!isHuggingFaceSource(source)) {
    const path = isAbsolute(source) ? source : resolve(opts.baseDir, source);
    try {
      const s = await stat(path);
      if (!s.isFile()) throw new ModelSourceError(`model source ${path} is not a file`);
    } catch (err) {
      if (err instanceof ModelSourceError) throw err;
      throw new ModelSourceError(`model file not found: ${path}`, { cause: err });
    }
    return path;
  }

  let expectedPath = opts.modelsDir;
  try {
    return await resolveModelFile(source, { directory: opts.modelsDir, download: false, cli: false });
  } catch (err) {
    // The message names the file the download would create; that is where an operator should put it by hand.
    const m = /No model file found at "([^"]+)"/.exec(err instanceof Error ? err.message : "");
    if (m?.[1] !== undefined) expectedPath = m[1];
  }
  const offline = (cause?: unknown) =>
    new ModelSourceError(
      `cannot download ${source} (no internet?); put the GGUF at ${expectedPath} and set \`source:\` to it in MESH_CONFIG`,
      { cause },
    );

  try {
    await withTimeout(lookup("huggingface.co"), 5000);
  } catch (err) {
    throw offline(err);
  }

  opts.onDownloadStart?.();
  return new Promise<string>((resolvePath, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const controller = new AbortController();
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        controller.abort();
        reject(offline(new Error(`no download progress for ${opts.stallTimeoutMs} ms`)));
      }, opts.stallTimeoutMs);
    };
    arm();
    resolveModelFile(source, {
      directory: opts.modelsDir,
      cli: false,
      signal: controller.signal,
      onProgress: ({ downloadedSize, totalSize }) => {
        arm();
        opts.onProgress?.(downloadedSize, totalSize);
      },
    }).then(
      (path) => {
        clearTimeout(timer);
        resolvePath(path);
      },
      (err: unknown) => {
        clearTimeout(timer);
        const msg = err instanceof Error ? err.message : String(err);
        reject(
          /fetch failed|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ENETUNREACH|ETIMEDOUT|ECONNRESET/.test(msg)
            ? offline(err)
            : new ModelSourceError(`cannot download ${source}: ${msg}`, { cause: err }),
        );
      },
    );
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        res(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        rej(e);
      },
    );
  });
}
