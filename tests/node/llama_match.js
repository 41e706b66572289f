#!/usr/bin/env node
// Replays llama-quantize's --tensor-type-file matching on an export (tools/quantize/quantize.cpp,
// src/llama-quant.cpp): the file is read as whitespace-separated PATTERN=TYPE tokens, the pattern
// (text before the first '=') is lowercased, and a tensor takes the type of the first pattern
// that std::regex_search (ECMAScript; JS RegExp is ECMAScript) finds in its name.
// Usage: node llama_match.js TYPES.txt NAMES.txt  -> one "name=type" line per name ("name=" if none)
'use strict';
const fs = require('fs');
const [typesPath, namesPath] = process.argv.slice(2);
const rules = fs.readFileSync(typesPath, 'latin1').split(/\s+/).filter((t) => t.length).map((tok) => {
  const eq = tok.indexOf('=');
  if (eq < 0) throw new Error(`no '=' in ${tok}`);
  return { re: new RegExp(tok.slice(0, eq).toLowerCase()), type: tok.slice(eq + 1).toLowerCase() };
});
const names = fs.readFileSync(namesPath, 'latin1').split('\n').filter((n) => n.length);
for (const n of names) {
  const hit = rules.find((r) => r.re.test(n));
  process.stdout.write(`${n}=${hit ? hit.type : ''}\n`);
}
