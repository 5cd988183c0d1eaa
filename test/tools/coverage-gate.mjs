// Fails the test run when line, branch or function coverage of src/ falls
// below the floor. tap alone knows only "100% or not at all"; this keeps an
// honest, real threshold instead. Reads tap's json-summary report.
import { readFileSync } from 'node:fs';
import { sep } from 'node:path';

const FLOOR = { lines: 95, branches: 90, functions: 95 };

let summary;
try {
  summary = JSON.parse(readFileSync('.tap/report/coverage-summary.json', 'utf8'));
} catch {
  console.error('coverage gate: .tap/report/coverage-summary.json is missing (did tap run with coverage?)');
  process.exit(1);
}

const totals = { lines: [0, 0], branches: [0, 0], functions: [0, 0] };
let files = 0;
for (const [file, entry] of Object.entries(summary)) {
  if (file === 'total' || !file.includes(`${sep}src${sep}`) || file.includes(`${sep}dist${sep}`)) continue;
  files += 1;
  for (const key of Object.keys(totals)) {
    totals[key][0] += entry[key].covered;
    totals[key][1] += entry[key].total;
  }
}
if (files === 0) {
  console.error('coverage gate: no src/ file in the coverage report');
  process.exit(1);
}
let failed = false;
const parts = [];
for (const [key, [covered, total]] of Object.entries(totals)) {
  const pct = total === 0 ? 100 : (100 * covered) / total;
  parts.push(`${key} ${pct.toFixed(1)}% (floor ${FLOOR[key]}%)`);
  if (pct < FLOOR[key]) failed = true;
}
console.log(`coverage gate over ${files} src files: ${parts.join(', ')}`);
if (failed) {
  console.error('coverage gate: below the floor');
  process.exit(1);
}
