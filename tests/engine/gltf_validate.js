#!/usr/bin/env node
// The Khronos glTF validator over .glb files: node gltf_validate.js FILE.glb...
//
// Prints one JSON object a line per file, in argument order:
//   {"path", "validator", "numErrors", "numWarnings", "numInfos", "numHints", "messages": [...]}
// where messages are the errors, warnings and infos ({code, severity, message, pointer}),
// hints left out. A file that cannot be read or parsed at all gets numErrors 1 and the reason.
// Exit code 0 when no file has errors, 1 otherwise, 2 on bad usage or without the validator.
//
// gltf-validator is required from TEXT3D_GLTF_VALIDATOR (the node_modules folder that
// install/text3d.py fills, TEXT3D_HOME/node/node_modules) when set, else by Node's own lookup.
'use strict';

const fs = require('fs');
const path = require('path');

const folder = process.env.TEXT3D_GLTF_VALIDATOR;
let validator;
try {
  validator = require(folder ? path.join(path.resolve(folder), 'gltf-validator') : 'gltf-validator');
} catch (error) {
  const where = folder ? `TEXT3D_GLTF_VALIDATOR=${folder}` : 'TEXT3D_GLTF_VALIDATOR unset';
  console.error(`gltf-validator not found (${where}): ` +
                'npm install --prefix DIR gltf-validator, then set TEXT3D_GLTF_VALIDATOR=DIR/node_modules');
  process.exit(2);
}
const SEVERITY = ['error', 'warning', 'info', 'hint'];

async function validate(file) {
  try {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
      uri: path.basename(file),
      format: 'glb', // every file here is a .glb: a broken header is reported, not taken for JSON
      maxIssues: 0, // unlimited
      writeTimestamp: false,
    });
    const issues = report.issues;
    return {
      path: file,
      validator: report.validatorVersion,
      numErrors: issues.numErrors,
      numWarnings: issues.numWarnings,
      numInfos: issues.numInfos,
      numHints: issues.numHints,
      messages: issues.messages
        .filter((m) => m.severity <= 2)
        .map((m) => ({ code: m.code, severity: SEVERITY[m.severity], message: m.message, pointer: m.pointer })),
    };
  } catch (error) {
    // An unreadable file, or one the validator refuses outright, counts as an error.
    return { path: file, numErrors: 1, numWarnings: 0, numInfos: 0, numHints: 0,
             messages: [{ code: 'UNREADABLE', severity: 'error', message: String(error) }] };
  }
}

async function main(files) {
  if (files.length === 0) {
    console.error('usage: node gltf_validate.js FILE.glb...');
    return 2;
  }
  let failed = false;
  for (const file of files) {
    const result = await validate(file);
    failed = failed || result.numErrors > 0;
    console.log(JSON.stringify(result));
  }
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
