/**
 * The category vocabularies the deep tier's formats speak, so a policy's `deep.categories` is checked when the
 * catalog loads rather than when a guard model first answers.
 */

/**
 * Llama Guard 3's hazard categories: the MLCommons AI Safety taxonomy (S1–S13) plus S14, code interpreter abuse.
 * Keys are the codes the model answers with; values the names its prompt lists.
 */
export const LLAMA_GUARD_CATEGORIES: Readonly<Record<string, string>> = {
  S1: "Violent Crimes.",
  S2: "Non-Violent Crimes.",
  S3: "Sex Crimes.",
  S4: "Child Exploitation.",
  S5: "Defamation.",
  S6: "Specialized Advice.",
  S7: "Privacy.",
  S8: "Intellectual Property.",
  S9: "Indiscriminate Weapons.",
  S10: "Hate.",
  S11: "Self-Harm.",
  S12: "Sexual Content.",
  S13: "Elections.",
  S14: "Code Interpreter Abuse.",
};

/** The four harm types ShieldGemma was trained on, by the ids a policy uses. */
export const SHIELDGEMMA_HARMS = ["dangerous_content", "harassment", "hate_speech", "sexually_explicit"] as const;
export type ShieldGemmaHarm = (typeof SHIELDGEMMA_HARMS)[number];
