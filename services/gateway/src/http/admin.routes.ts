import { AppError } from "@tokenmesh/runtime";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { bearerToken, hashSecret, type KeyRecord, newKey, sameHash } from "../domain/keys.js";
import type { KeyStore } from "../domain/ports.js";
import { firstIssue } from "./openai.schema.js";

const CreateKeyBody = z.object({
  name: z.string().min(1).max(200),
  team: z.string().max(200).default(""),
  user: z.string().max(200).default(""),
  models: z.array(z.string().min(1)).default([]),
  rpm: z.number().int().min(0).default(0),
  tpm: z.number().int().min(0).default(0),
});

/** The public view of a key record: never the hash, never the secret. */
function view(r: KeyRecord) {
  return { id: r.id, name: r.name, team: r.team, user: r.user, models: r.models, rpm: r.rpm, tpm: r.tpm, created_at: r.createdAt };
}

/**
 * The admin API (`Authorization: Bearer $TOKENMESH_ADMIN_KEY`): virtual keys. Without an admin key configured the
 * admin API answers 403 to everything.
 */
export function registerAdminRoutes(app: FastifyInstance, deps: { keys: KeyStore; adminKeyHash: string | undefined }): void {
  const requireAdmin = async (req: FastifyRequest) => {
    if (!deps.adminKeyHash) throw new AppError("PERMISSION_DENIED", "The admin API is disabled: set TOKENMESH_ADMIN_KEY");
    const token = bearerToken(req.headers.authorization);
    if (!token) throw new AppError("UNAUTHENTICATED", "Missing admin key", { reason: "invalid_api_key" });
    if (!sameHash(hashSecret(token), deps.adminKeyHash)) {
      throw new AppError("PERMISSION_DENIED", "This key is not the admin key", { reason: "invalid_api_key" });
    }
  };

  app.register(async (admin) => {
    admin.addHook("onRequest", requireAdmin);

    admin.post("/admin/keys", async (req, reply) => {
      const parsed = CreateKeyBody.safeParse(req.body ?? {});
      if (!parsed.success) {
        const { message, param } = firstIssue(parsed.error);
        throw new AppError("INVALID_ARGUMENT", message, { param });
      }
      const { id, secret, hash } = newKey();
      const record: KeyRecord = { id, ...parsed.data, createdAt: new Date().toISOString(), hash };
      await deps.keys.create(record);
      return reply.code(201).send({ ...view(record), key: secret });
    });

    admin.get("/admin/keys", async () => ({ data: (await deps.keys.list()).map(view) }));

    admin.get<{ Params: { id: string } }>("/admin/keys/:id", async (req) => {
      const r = await deps.keys.get(req.params.id);
      if (!r) throw new AppError("NOT_FOUND", `No key ${req.params.id}`);
      return view(r);
    });

    admin.delete<{ Params: { id: string } }>("/admin/keys/:id", async (req) => {
      if (!(await deps.keys.revoke(req.params.id))) throw new AppError("NOT_FOUND", `No key ${req.params.id}`);
      return { id: req.params.id, deleted: true };
    });
  });
}
