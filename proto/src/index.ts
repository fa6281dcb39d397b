import { fileURLToPath } from "node:url";

/**
 * Path of the binary FileDescriptorSet (`buf build -o`) of every Tokenmesh proto, for gRPC server reflection.
 * It is written at build time beside this module.
 */
export const descriptorSetPath: string = fileURLToPath(new URL("./descriptor.binpb", import.meta.url));
