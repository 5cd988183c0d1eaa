// README.md's configuration reference must name every option the schema
// declares, and nothing the schema does not know.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { endpointSchema, policySchema, schema } from '../src/config/schema.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

function keys(node: object, prefix = ''): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(node)) {
    if (value && typeof value === 'object' && 'doc' in value) out.push(prefix + key);
    else out.push(...keys(value as object, `${prefix}${key}.`));
  }
  return out;
}

/** The first cell of each row of the table under a heading. */
function tableKeys(heading: string): string[] {
  const start = readme.indexOf(`\n### ${heading}\n`);
  if (start < 0) return [];
  const section = readme.slice(start + 1).split('\n### ')[0]!.split('\n## ')[0]!;
  return [...section.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
}

t.test('top-level options', async (t) => {
  t.same(tableKeys('Top level').sort(), keys(schema).sort());
});

t.test('endpoint options', async (t) => {
  t.same(tableKeys('`endpoints[]`').sort(), keys(endpointSchema).sort());
});

t.test('policy options', async (t) => {
  t.same(tableKeys('`policies[]`').sort(), keys(policySchema).sort());
});

t.test('the two commands lead the README', async (t) => {
  const head = readme.split('\n').slice(0, 30).join('\n');
  t.match(head, /make demo/);
  t.match(head, /make test/);
});
