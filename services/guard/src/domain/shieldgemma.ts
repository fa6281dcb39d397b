import type { ShieldGemmaHarm } from "@tokenmesh/guard-policy";
import { type DeepSubject, lastUserText, type ModelVerdict, VerdictParseError } from "./conversation.js";

/** ShieldGemma's policy statements (its model card), for prompts (input) and for responses (output). */
const HARMS: Record<ShieldGemmaHarm, { title: string; about: string }> = {
  dangerous_content: {
    title: "No Dangerous Content",
    about:
      "content that harming oneself and/or others (e.g., accessing or building firearms and explosive devices, promotion of terrorism, instructions for suicide).",
  },
  harassment: {
    title: "No Harassment",
    about:
      "content that is malicious, intimidating, bullying, or abusive content targeting another individual (e.g., physical threats, denial of tragic events, disparaging victims of violence).",
  },
  hate_speech: {
    title: "No Hate Speech",
    about:
      "content that targeting identity and/or protected attributes (e.g., racial slurs, promotion of discrimination, calls to violence against protected groups) or dehumanizing/belittling/vilifying on the bases of race, ethnicity, religion, disability, age, nationality, veteran status, sexual orientation, gender, gender identity, caste, or any other protected status.",
  },
  sexually_explicit: {
    title: "No Sexually Explicit Information",
    about:
      "content that contains references to sexual acts or other lewd content (e.g., sexually graphic descriptions, content aimed at causing arousal). Medical or scientific terms related to human anatomy or sex education are permitted.",
  },
};

const ALL: readonly ShieldGemmaHarm[] = Object.keys(HARMS) as ShieldGemmaHarm[];

/**
 * ShieldGemma's prompt (model card, "Prompt-only" and "Prompt-response" use cases): the last user message as the
 * human question (and the answer as the chatbot response for output), the policy statements, and the Yes/No
 * question. Sent as one user message; the endpoint's Gemma chat template wraps it. ShieldGemma is trained on one
 * policy per prompt; several are listed together here (one hop per check), which the model card allows at some
 * cost in calibration: configure one harm per policy where precision matters.
 */
export function buildShieldGemmaPrompt(subject: DeepSubject, harms?: readonly string[]): string {
  const output = subject.stage === "output";
  const principles = (harms ?? ALL).map((h) => {
    const harm = HARMS[h as ShieldGemmaHarm];
    const who = output ? "The chatbot shall not generate" : "The prompt shall not contain or seek generation of";
    return `* "${harm.title}": ${who} ${harm.about}`;
  });
  const lines = [
    `You are a policy expert trying to help determine whether ${output ? "an AI response to a prompt" : "a user prompt"} is in violation of the defined safety policies.`,
    "",
    "<start_of_turn>",
    `Human Question: ${lastUserText(subject.conversation)}`,
    "<end_of_turn>",
    "",
  ];
  if (output) lines.push("<start_of_turn>", `Chatbot Response: ${subject.response}`, "<end_of_turn>", "");
  lines.push(
    "Our safety principle is defined in the below:",
    "",
    ...principles,
    "",
    `Does the ${output ? "Chatbot Response" : "human question"} violate the above principle? Your answer must start with 'Yes' or 'No'. And then walk through step by step to be sure we answer correctly.`,
  );
  return lines.join("\n");
}

/**
 * Reads ShieldGemma's answer: its first word is `Yes` (violates: unsafe, reported against every harm asked about,
 * since one answer covers them all) or `No`. Throws VerdictParseError otherwise.
 */
export function parseShieldGemmaVerdict(answer: string, harms?: readonly string[]): ModelVerdict {
  const word = /^\W*([A-Za-z]+)/.exec(answer)?.[1]?.toLowerCase();
  if (word === "no") return { unsafe: false, categories: [] };
  if (word === "yes") return { unsafe: true, categories: [...(harms ?? ALL)] };
  throw new VerdictParseError(`guard model answered neither "Yes" nor "No" (${answer.length} chars)`);
}
