import { CostServiceClient } from "@tokenmesh/proto/cost/v1/cost";
import { callUnary, createGrpcClient } from "@tokenmesh/runtime";
import type { Cost } from "../domain/ports.js";

/** The cost service over gRPC (reservations against hard budgets). */
export class GrpcCost implements Cost {
  readonly client: CostServiceClient;

  constructor(address: string) {
    this.client = createGrpcClient(CostServiceClient, address);
  }

  async reserve(input: Parameters<Cost["reserve"]>[0]): Promise<string> {
    const res = await callUnary(this.client.reserve.bind(this.client), input, { deadlineMs: 5_000 });
    return res.reservationId;
  }

  async release(reservationId: string): Promise<void> {
    await callUnary(this.client.release.bind(this.client), { reservationId }, { deadlineMs: 5_000 });
  }

  close(): void {
    this.client.close();
  }
}
