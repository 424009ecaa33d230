// Load a GGUF file with llama.cpp (node-llama-cpp, CPU) and print, as one JSON object,
// the ids it gives each text and its greedy continuation of each prompt's ids.
// usage: node greedy.mjs MODEL.gguf REQUEST.json
//   REQUEST: {"texts": [string...], "prompts": [[id...]...], "new_tokens": n}
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [modelPath, requestPath] = process.argv.slice(2);
const request = JSON.parse(readFileSync(requestPath, "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath});
const ids = request.texts.map((text) => Array.from(model.tokenize(text, false)));
const longest = Math.max(0, ...request.prompts.map((p) => p.length));
const context = await model.createContext({contextSize: longest + request.new_tokens + 8, threads: 1});
const sequence = context.getSequence();
const continuations = [];
for (const prompt of request.prompts) {
  await sequence.clearHistory();
  const continuation = [];
  for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
    continuation.push(token);
    if (continuation.length >= request.new_tokens) break;
  }
  continuations.push(continuation);
}
process.stdout.write(JSON.stringify({ids, continuations}) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
