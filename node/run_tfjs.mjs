// Runs TensorFlow.js models in Node.js with the TF.js runtime, so convbot can check that a
// converted model really loads and executes.
//
// Two modes:
//   node run_tfjs.mjs           reads ONE JSON request from stdin, prints ONE JSON line, exits;
//   node run_tfjs.mjs --serve   reads one JSON request per line and answers one JSON line per
//                               request, in order, until stdin closes. TF.js is imported once and
//                               loaded models are kept (see ModelCache), so a verification that
//                               runs the same model many times parses it once.
//
// A request:
//   {"model_dir": "/abs/dir", "kind": "graph"|"layers",
//    "inputs": {"<name>": {"dtype": "float32"|"int32"|"bool", "shape": [..], "file": "/abs/raw.bin"}},
//    "outputs": ["<name>", ...] | null, "out_dir": "/abs/dir",
//    "backend": "cpu"|"wasm"|"auto" (optional, default cpu), "positional": false (optional),
//    "input_order": ["<name>", ...] (optional: the order of "inputs" for positional feeding),
//    "id": <any> (optional: echoed in the answer)}
// "auto" runs on WASM (30x faster than the pure-JS CPU backend on a MobileNet) and, when WASM
// fails to load or run the model (a kernel it lacks, e.g. Einsum), runs it again on CPU.
// Input files hold raw little-endian bytes, as numpy's `tofile()` writes them.
// A graph model is fed by name (`model.execute({name: tensor}, outputs)`), or with "positional"
// as most web code calls it: `model.execute(tensor)` / `model.execute([t1, t2])` in input order.
// Positional feeding fails when the graph has more inputs (e.g. a PlaceholderWithDefault) than
// tensors are given; feeding by name lets TF.js use the default.
//
// An answer (one JSON line on stdout):
//   {"ok": true, "backend": "wasm", "async": false, "input_names": [..], "output_names": [..],
//    "outputs": {"<name>": {"dtype": "...", "shape": [..], "file": "/abs/out_dir/output_0.bin"}},
//    "fallback": "<why WASM did not run it>" (only when "auto" ran it on CPU)}
//   {"ok": false, "stage": "request"|"load"|"execute", "error": "<message>"}
// Everything TF.js logs goes to stderr, so stdout carries only answers.

import { Buffer } from 'node:buffer';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import readline from 'node:readline';

// TF.js writes banners and warnings with console.log/info/warn; keep stdout for the result.
for (const method of ['log', 'info', 'warn', 'debug']) {
  console[method] = (...args) => console.error(...args);
}

const require = createRequire(import.meta.url);

class StageError extends Error {
  constructor(stage, message) {
    super(message);
    this.stage = stage;
  }
}

function reply(payload) {
  // Resolve once the line is flushed: process.exit() may drop pending writes to a pipe (macOS).
  return new Promise((resolve) => {
    process.stdout.write(`${JSON.stringify(payload)}\n`, () => resolve());
  });
}

function messageOf(error) {
  if (error instanceof Error) {
    return error.message || String(error);
  }
  return String(error);
}

function parseRequest(text) {
  let request;
  try {
    request = JSON.parse(text);
  } catch (error) {
    throw new StageError('request', `the request is not JSON: ${messageOf(error)}`);
  }
  if (request === null || typeof request !== 'object') {
    throw new StageError('request', 'the request must be a JSON object');
  }
  if (typeof request.model_dir !== 'string' || typeof request.out_dir !== 'string') {
    throw new StageError('request', 'the request needs "model_dir" and "out_dir"');
  }
  const kind = request.kind ?? 'graph';
  if (kind !== 'graph' && kind !== 'layers') {
    throw new StageError('request', `unknown model kind ${JSON.stringify(kind)}`);
  }
  const backend = request.backend ?? 'cpu';
  if (!['cpu', 'wasm', 'auto'].includes(backend)) {
    throw new StageError('request', `unknown backend ${JSON.stringify(backend)}`);
  }
  const outputs = request.outputs ?? null;
  if (outputs !== null && !(Array.isArray(outputs) && outputs.every((name) => typeof name === 'string'))) {
    throw new StageError('request', '"outputs" must be a list of names or null');
  }
  const inputs = request.inputs ?? {};
  const inputOrder = request.input_order ?? Object.keys(inputs);
  if (!Array.isArray(inputOrder) || inputOrder.length !== Object.keys(inputs).length
      || !inputOrder.every((name) => Object.hasOwn(inputs, name))) {
    throw new StageError('request', '"input_order" must list the names in "inputs"');
  }
  return { ...request, kind, backend, outputs, inputs, inputOrder, positional: Boolean(request.positional) };
}

let tfModule = null;

// Imported once per process: importing @tensorflow/tfjs takes about a second.
function tfjs() {
  if (tfModule === null) {
    tfModule = require('@tensorflow/tfjs');
  }
  return tfModule;
}

let wasmRegistered = false;

async function useBackend(backend) {
  const tf = tfjs();
  if (backend === 'wasm' && !wasmRegistered) {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    // The .wasm binaries ship in the package's dist/: load them from there, never from a CDN.
    wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}${path.sep}`);
    wasmRegistered = true;
  }
  if (tf.getBackend() !== backend && !(await tf.setBackend(backend))) {
    throw new StageError('load', `the TF.js ${backend} backend could not be initialised`);
  }
  await tf.ready();
  return tf;
}

// ---------------------------------------------------------------- loading

function readModelJson(modelDir) {
  const file = path.join(modelDir, 'model.json');
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new StageError('load', `cannot read model.json: ${messageOf(error)}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new StageError('load', `model.json is not valid JSON: ${messageOf(error)}`);
  }
}

function toArrayBuffer(buffer) {
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
}

function readArtifacts(modelDir) {
  const modelJson = readModelJson(modelDir);
  if (modelJson === null || typeof modelJson !== 'object' || modelJson.modelTopology == null) {
    throw new StageError('load', 'model.json has no modelTopology');
  }
  const manifest = modelJson.weightsManifest ?? [];
  if (!Array.isArray(manifest)) {
    throw new StageError('load', 'model.json: weightsManifest is not a list');
  }
  const weightSpecs = [];
  const shards = [];
  for (const group of manifest) {
    weightSpecs.push(...(group.weights ?? []));
    for (const shardPath of group.paths ?? []) {
      // Paths in the manifest are relative to model.json (URL-style, so they may be %-escaped).
      // An uploaded manifest is untrusted: a path that leads out of the model folder is refused.
      const root = path.resolve(modelDir);
      const file = path.resolve(root, decodeURIComponent(shardPath));
      if (!file.startsWith(root + path.sep)) {
        throw new StageError('load', `weight file ${shardPath} listed in model.json lies outside the model folder`);
      }
      try {
        shards.push(readFileSync(file));
      } catch (error) {
        const reason = error && error.code === 'ENOENT' ? 'is missing' : `cannot be read (${messageOf(error)})`;
        throw new StageError('load', `weight file ${shardPath} listed in model.json ${reason}`);
      }
    }
  }
  const artifacts = {
    modelTopology: modelJson.modelTopology,
    weightSpecs,
    weightData: toArrayBuffer(Buffer.concat(shards)),
  };
  for (const key of ['format', 'generatedBy', 'convertedBy', 'signature', 'userDefinedMetadata', 'modelInitializer',
    'initializerSignature', 'trainingConfig']) {
    if (modelJson[key] !== undefined) {
      artifacts[key] = modelJson[key];
    }
  }
  return artifacts;
}

async function loadModel(tf, request) {
  const artifacts = readArtifacts(request.model_dir);
  try {
    const handler = tf.io.fromMemory(artifacts);
    if (request.kind === 'layers') {
      return await tf.loadLayersModel(handler);
    }
    return await tf.loadGraphModel(handler);
  } catch (error) {
    throw new StageError('load', messageOf(error));
  }
}

// What identifies a model folder's contents: every file's name, size and modification time.
// A folder rewritten in place (a new conversion into the same directory) gets a new key.
function folderStamp(modelDir) {
  let names;
  try {
    names = readdirSync(modelDir).sort();
  } catch (error) {
    throw new StageError('load', `cannot read the model folder: ${messageOf(error)}`);
  }
  return names.map((name) => {
    try {
      const stat = statSync(path.join(modelDir, name));
      return `${name}:${stat.size}:${stat.mtimeMs}`;
    } catch {
      return `${name}:gone`;
    }
  }).join('|');
}

// The few models used last, each on the backend it was loaded on (a model's weights live in its
// backend's memory). Verification runs one model on several input sets, then selection and
// culprit run it again: small, but holding them saves a parse per run.
class ModelCache {
  constructor(capacity) {
    this.capacity = capacity;
    this.models = new Map();
  }

  async get(tf, request, backend) {
    const key = JSON.stringify([path.resolve(request.model_dir), request.kind, backend]);
    const stamp = folderStamp(request.model_dir);
    const cached = this.models.get(key);
    this.models.delete(key);
    if (cached !== undefined && cached.stamp === stamp) {
      this.models.set(key, cached); // most recently used last
      return cached.model;
    }
    if (cached !== undefined) {
      cached.model.dispose();
    }
    const model = await loadModel(tf, request);
    this.models.set(key, { stamp, model });
    while (this.models.size > this.capacity) {
      const [oldest, entry] = this.models.entries().next().value;
      this.models.delete(oldest);
      entry.model.dispose();
    }
    return model;
  }
}

// ---------------------------------------------------------------- inputs and outputs

const BYTES = { float32: 4, int32: 4, bool: 1 };

function readInput(tf, name, spec) {
  const { dtype, shape, file } = spec ?? {};
  if (!(dtype in BYTES)) {
    throw new StageError('request', `input ${name}: unsupported dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every((dim) => Number.isInteger(dim) && dim >= 0)) {
    throw new StageError('request', `input ${name}: shape must be a list of non-negative integers`);
  }
  let bytes;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new StageError('request', `input ${name}: ${messageOf(error)}`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (bytes.byteLength !== count * BYTES[dtype]) {
    throw new StageError('request', `input ${name}: ${bytes.byteLength} bytes for shape [${shape}] of ${dtype}`);
  }
  const buffer = toArrayBuffer(bytes);
  let values;
  if (dtype === 'float32') {
    values = new Float32Array(buffer);
  } else if (dtype === 'int32') {
    values = new Int32Array(buffer);
  } else {
    values = new Uint8Array(buffer);
  }
  return tf.tensor(values, shape, dtype);
}

const TYPED_ARRAYS = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };

function writeOutput(tensor, file) {
  const { dtype } = tensor;
  const data = tensor.dataSync();
  if (dtype === 'string') {
    const strings = Array.from(data, (bytes) => Buffer.from(bytes).toString('utf8'));
    writeFileSync(file, JSON.stringify(strings));
  } else if (dtype in TYPED_ARRAYS) {
    // The backend's array need not match the dtype: the CPU backend casts int32 to float32 by
    // relabelling the tensor and keeping its Int32Array, so convert the values, never copy bytes.
    const Typed = TYPED_ARRAYS[dtype];
    const typed = data instanceof Typed ? data : Typed.from(data);
    writeFileSync(file, Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength));
  } else {
    throw new StageError('execute', `output of dtype ${dtype} cannot be written`);
  }
  return { dtype, shape: tensor.shape };
}

function asList(result) {
  if (Array.isArray(result)) {
    return result;
  }
  return [result];
}

// ---------------------------------------------------------------- execution

async function runGraph(model, feeds, inputOrder, requested, positional) {
  const outputNames = requested ?? model.outputNodes;
  if (positional) {
    const tensors = inputOrder.map((name) => feeds[name]);
    feeds = tensors.length === 1 ? tensors[0] : tensors;
  }
  let usedAsync = false;
  let result;
  try {
    result = model.execute(feeds, outputNames);
  } catch (error) {
    // Dynamic control flow ops (While, Switch, NonMaxSuppression...) refuse the synchronous path.
    if (!/executeAsync/.test(messageOf(error))) {
      throw new StageError('execute', messageOf(error));
    }
    usedAsync = true;
    try {
      result = await model.executeAsync(feeds, outputNames);
    } catch (asyncError) {
      throw new StageError('execute', messageOf(asyncError));
    }
  }
  return { names: outputNames, tensors: asList(result), usedAsync };
}

function runLayers(model, feeds, requested) {
  const inputNames = model.inputNames;
  const unknown = Object.keys(feeds).filter((name) => !inputNames.includes(name));
  const missing = inputNames.filter((name) => !(name in feeds));
  if (unknown.length > 0 || missing.length > 0) {
    throw new StageError('execute', `the layers model takes inputs [${inputNames}]; `
      + `got [${Object.keys(feeds)}]`);
  }
  const outputNames = requested ?? model.outputNames;
  const absent = outputNames.filter((name) => !model.outputNames.includes(name));
  if (absent.length > 0) {
    throw new StageError('execute', `the layers model has outputs [${model.outputNames}]; not [${absent}]`);
  }
  let result;
  try {
    result = asList(model.predict(inputNames.map((name) => feeds[name])));
  } catch (error) {
    throw new StageError('execute', messageOf(error));
  }
  const byName = new Map(model.outputNames.map((name, index) => [name, result[index]]));
  return { names: outputNames, tensors: outputNames.map((name) => byName.get(name)), usedAsync: false };
}

async function runOn(backend, request, cache) {
  let tf;
  try {
    tf = await useBackend(backend);
  } catch (error) {
    throw error instanceof StageError ? error : new StageError('load', messageOf(error));
  }
  const model = cache === null ? await loadModel(tf, request) : await cache.get(tf, request, backend);
  const feeds = {};
  const held = [];
  try {
    for (const name of request.inputOrder) {
      feeds[name] = readInput(tf, name, request.inputs[name]);
      held.push(feeds[name]);
    }
    const run = request.kind === 'layers'
      ? runLayers(model, feeds, request.outputs)
      : await runGraph(model, feeds, request.inputOrder, request.outputs, request.positional);
    held.push(...run.tensors);
    const outputs = {};
    run.names.forEach((name, index) => {
      const file = path.join(request.out_dir, `output_${index}.bin`);
      outputs[name] = { ...writeOutput(run.tensors[index], file), file };
    });
    return {
      ok: true,
      backend: tf.getBackend(),
      async: run.usedAsync,
      outputs,
      input_names: request.kind === 'layers' ? model.inputNames : model.inputNodes,
      output_names: request.kind === 'layers' ? model.outputNames : model.outputNodes,
    };
  } finally {
    // A warm process runs many models: free what this run made (a model's weights stay cached).
    for (const tensor of new Set(held)) {
      if (tensor != null && !tensor.isDisposed) {
        tensor.dispose();
      }
    }
  }
}

function failure(error) {
  const stage = error instanceof StageError ? error.stage : 'execute';
  return { ok: false, stage, error: messageOf(error) };
}

// Answers one request (its text). Never throws: a failure is an answer.
async function handle(text, cache) {
  let request;
  try {
    request = parseRequest(text);
  } catch (error) {
    return failure(error);
  }
  const id = request.id === undefined ? {} : { id: request.id };
  if (request.backend !== 'auto') {
    try {
      return { ...id, ...(await runOn(request.backend, request, cache)) };
    } catch (error) {
      return { ...id, ...failure(error) };
    }
  }
  let wasmError;
  try {
    return { ...id, ...(await runOn('wasm', request, cache)) };
  } catch (error) {
    if (error instanceof StageError && error.stage === 'request') {
      return { ...id, ...failure(error) };
    }
    wasmError = messageOf(error);
  }
  try {
    return { ...id, ...(await runOn('cpu', request, cache)), fallback: wasmError };
  } catch (error) {
    return { ...id, ...failure(error) };
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function serve() {
  const cache = new ModelCache(4);
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) { // one request at a time, answered in order
    if (line.trim() !== '') {
      await reply(await handle(line, cache));
    }
  }
}

process.on('unhandledRejection', (reason) => console.error('unhandled rejection:', reason));

if (process.argv.includes('--serve')) {
  await serve();
} else {
  await reply(await handle(await readStdin(), null));
}
// Exit at once: the WASM backend may leave worker threads that would keep Node.js alive.
process.exit(0);
