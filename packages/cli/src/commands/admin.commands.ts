import type { AdminClient } from "../admin.client.js";
import type { Command } from "../args.js";
import {
  describeRange,
  formatAudit,
  formatBudgetSet,
  formatBudgetStatus,
  formatKeys,
  formatUsageReport,
} from "../format.js";
import { type Output, printJson } from "../output.js";

/** The commands that call the gateway's admin API. */
export type AdminCommand = Exclude<Command, { name: "help" } | { name: "usage tail" } | { name: `jobs ${string}` }>;

/**
 * Runs one admin command: one HTTP call, then its answer as text (or as the raw JSON with `json`). Errors from
 * the client (ApiError, CliError) propagate unchanged.
 */
export async function runAdminCommand(
  client: AdminClient,
  command: AdminCommand,
  out: Output,
  json: boolean,
): Promise<void> {
  switch (command.name) {
    case "keys create": {
      const created = await client.createKey(command.body);
      if (json) return printJson(out, created);
      out.write(
        `Created key ${created.id} (${created.name})\n` +
          `\n  ${created.key}\n\n` +
          "Save this secret now: it is not shown again (the gateway stores only its hash).\n",
      );
      return;
    }
    case "keys list": {
      const keys = await client.listKeys();
      if (json) return printJson(out, keys);
      out.write(formatKeys(keys.data));
      return;
    }
    case "keys revoke": {
      const revoked = await client.revokeKey(command.id);
      if (json) return printJson(out, revoked);
      out.write(`Revoked key ${revoked.id}\n`);
      return;
    }
    case "budgets set": {
      const budget = await client.setBudget(command.body);
      if (json) return printJson(out, budget);
      out.write(formatBudgetSet(budget));
      return;
    }
    case "budgets get": {
      const status = await client.getBudget(command.scope, command.id, command.period);
      if (json) return printJson(out, status);
      out.write(formatBudgetStatus(command.scope, command.id, command.period, status));
      return;
    }
    case "audit list": {
      const { name: _, ...query } = command;
      const list = await client.audit(query);
      if (json) return printJson(out, list);
      out.write(formatAudit(list));
      return;
    }
    case "usage report": {
      const { scope, id, period, start, end } = command;
      const report = await client.usage({ scope, id, period, ...(start && { start }), ...(end && { end }) });
      if (json) return printJson(out, report);
      out.write(formatUsageReport(`Usage of ${scope} ${id} ${describeRange(period, start, end)}`, report));
      return;
    }
  }
}
