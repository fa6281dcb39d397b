import { type Catalog, loadCatalog, watchCatalog } from "@tokenmesh/catalog";
import { AppError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import { type PolicySet, parseGuardSection } from "../domain/policy.js";
import { guardMetrics } from "../metrics.js";

function compile(catalog: Catalog, origin: string): PolicySet {
  const r = parseGuardSection(catalog.guard);
  if (!r.success)
    throw new AppError("FAILED_PRECONDITION", `${origin}: invalid guard section:\n  - ${r.problems.join("\n  - ")}`);
  return r.policies;
}

/**
 * The guard policies from the catalog file's `guard:` section, kept current: `start` loads the file (failing
 * when it or its guard section is invalid), then reloads on change. An invalid edit is logged and the policies
 * in force stay; requests always see one consistent PolicySet.
 */
export class PolicyStore {
  private policies: PolicySet | undefined;
  private stopWatching: (() => void) | undefined;

  constructor(
    private readonly path: string,
    private readonly logger: Logger,
  ) {}

  /** The policies in force. Throws before `start`. */
  get current(): PolicySet {
    if (!this.policies) throw new AppError("UNAVAILABLE", "guard policy not loaded");
    return this.policies;
  }

  async start(): Promise<void> {
    let catalog: Catalog;
    try {
      catalog = await loadCatalog(this.path);
    } catch (err) {
      throw new AppError("FAILED_PRECONDITION", (err as Error).message, { cause: err });
    }
    this.policies = compile(catalog, this.path);
    this.logger.info({ path: this.path, named: [...this.policies.named.keys()] }, "guard policy loaded");
    this.stopWatching = watchCatalog(this.path, {
      onChange: (next) => {
        try {
          this.policies = compile(next, this.path);
          guardMetrics.policyReloads.inc({ result: "ok" });
          this.logger.info({ path: this.path, named: [...this.policies.named.keys()] }, "guard policy reloaded");
        } catch (err) {
          guardMetrics.policyReloads.inc({ result: "invalid" });
          this.logger.error({ err: (err as Error).message }, "guard policy change rejected; keeping the previous one");
        }
      },
      onError: (err) => {
        guardMetrics.policyReloads.inc({ result: "invalid" });
        this.logger.error({ err: err.message }, "catalog change rejected; keeping the previous guard policy");
      },
    });
  }

  stop(): void {
    this.stopWatching?.();
    this.stopWatching = undefined;
  }
}
