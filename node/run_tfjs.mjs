// Runs one TensorFlow.js model in Node.js with the pure-JavaScript TF.js runtime, so convbot can
// check that a converted model really loads and executes.
//
// Reads ONE JSON request from stdin:
//   {"model_dir": "/abs/dir", "kind": "graph"|"layers",
//    "inputs": {"<name>": {"dtype": "float32"|"int32"|"bool", "shape": [..], "file": "/abs/raw.bin"}},
//    "outputs": ["<name>", ...] | null, "out_dir": "/abs/dir",
//    "backend": "cpu"|"wasm" (optional, default cpu), "positional": false (optional),
//    "input_order": ["<name>", ...] (optional: the order of "inputs" for positional feeding)}
// Input files hold raw little-endian bytes, as numpy's `tofile()` writes them.
// A graph model is fed by name (`model.execute({name: tensor}, outputs)`), or with "positional"
// as most web code calls it: `model.execute(tensor)` / `model.execute([t1, t2])` in input order.
// Positional feeding fails when the graph has more inputs (e.g. a PlaceholderWithDefault) than
// tensors are given; feeding by name lets TF.js use the default.
//
// Prints ONE JSON line to stdout and exits 0:
//   {"ok": true, "backend": "cpu", "async": false, "input_names": [..], "output_names": [..],
//    "outputs": {"<name>": {"dtype": "...", "shape": [..], "file": "/abs/out_dir/output_0.bin"}}}
//   {"ok": false, "stage": "request"|"load"|"execute", "error": "<message>"}
// Everything TF.js logs goes to stderr, so stdout carries only that line.

import { Buffer } from 'node:buffer';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';

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

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
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
  if (backend !== 'cpu' && backend !== 'wasm') {
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

async function loadTf(backend) {
  const tf = require('@tensorflow/tfjs');
  if (backend === 'wasm') {
    require('@tensorflow/tfjs-backend-wasm');
  }
  if (!(await tf.setBackend(backend))) {
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

async function main() {
  const request = parseRequest(await readStdin());
  let tf;
  try {
    tf = await loadTf(request.backend);
  } catch (error) {
    throw error instanceof StageError ? error : new StageError('load', messageOf(error));
  }
  const model = await loadModel(tf, request);
  const inputNames = request.kind === 'layers' ? model.inputNames : model.inputNodes;
  const modelOutputNames = request.kind === 'layers' ? model.outputNames : model.outputNodes;

  const feeds = {};
  for (const name of request.inputOrder) {
    feeds[name] = readInput(tf, name, request.inputs[name]);
  }
  const run = request.kind === 'layers'
    ? runLayers(model, feeds, request.outputs)
    : await runGraph(model, feeds, request.inputOrder, request.outputs, request.positional);

  const outputs = {};
  run.names.forEach((name, index) => {
    const file = path.join(request.out_dir, `output_${index}.bin`);
    outputs[name] = { ...writeOutput(run.tensors[index], file), file };
  });
  await reply({
    ok: true,
    backend: tf.getBackend(),
    async: run.usedAsync,
    outputs,
    input_names: inputNames,
    output_names: modelOutputNames,
  });
}

try {
  await main();
} catch (error) {
  const stage = error instanceof StageError ? error.stage : 'execute';
  await reply({ ok: false, stage, error: messageOf(error) });
}
// Exit at once: the WASM backend may leave worker threads that would keep Node.js alive.
process.exit(0);
