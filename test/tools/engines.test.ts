// The Node range package.json claims (engines.node) is true for what runs in
// production: every package the service loads at run time accepts the lowest
// version of that range. Development packages that declare a higher Node are
// tolerated only when README.md names them and their code uses no API newer
// than that version (they run in CI on it, Node 20, and on Node 24).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from '../support/service-process.js';
import { listFiles } from '../deploy/lib/files.js';

type Version = [number, number, number];

function parse(text: string): Version {
  const match = /^v?(\d+)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?$/.exec(text);
  if (!match) throw new Error(`cannot read the version "${text}"`);
  return [Number(match[1]), Number(match[2]) || 0, Number(match[3]) || 0];
}

const compare = (a: Version, b: Version) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** Whether `version` is in an engines range: `||` of comparator sets (>=, >, <=, <, ^, ~, =, bare or x versions). */
export function satisfies(version: string, range: string): boolean {
  const v = parse(version);
  return range.split('||').some((set) =>
    set
      .replace(/(>=|<=|>|<|\^|~|=)\s+/g, '$1')
      .trim()
      .split(/\s+/)
      .filter((part) => part !== '')
      .every((part) => {
        if (part === '*' || part === 'x') return true;
        const [, op, text] = /^(>=|<=|>|<|\^|~|=)?\s*(.+)$/.exec(part)!;
        const bound = parse(text!);
        const parts = text!.replace(/^v/, '').split('.').filter((p) => /^\d+$/.test(p)).length;
        switch (op) {
          case '>=': return compare(v, bound) >= 0;
          case '>': return compare(v, bound) > 0;
          case '<=': return compare(v, bound) <= 0;
          case '<': return compare(v, bound) < 0;
          case '^': return compare(v, bound) >= 0 && v[0] === bound[0];
          case '~': return compare(v, bound) >= 0 && v[0] === bound[0] && v[1] === bound[1];
          default:
            // A bare "20" or "20.x" is the whole major (or minor) line.
            return parts === 1 ? v[0] === bound[0] : parts === 2 ? v[0] === bound[0] && v[1] === bound[1] : compare(v, bound) === 0;
        }
      }),
  );
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { dev?: boolean; engines?: { node?: string } | string[] }>;
};
const lowest = /^>=\s*(\d+\.\d+\.\d+)$/.exec(pkg.engines.node)?.[1];

t.test('the range reader', async (t) => {
  t.ok(satisfies('20.19.0', '>=20.19.0'));
  t.notOk(satisfies('20.18.9', '>=20.19.0'));
  t.notOk(satisfies('20.19.0', '>=22'));
  t.ok(satisfies('20.19.0', '^20.17.0 || >=22.9.0'));
  t.notOk(satisfies('21.0.0', '^20.17.0 || >=22.9.0'));
  t.ok(satisfies('20.19.0', '20 || >=22'));
  t.ok(satisfies('20.19.0', '>=18 <21'));
  t.notOk(satisfies('20.19.0', '>= 21'));
  t.throws(() => satisfies('20.19.0', 'latest'), 'an unreadable range fails the test rather than passing it');
});

t.test('engines.node is a lower bound', async (t) => {
  t.ok(lowest, `package.json engines.node (${pkg.engines.node}) has the form >=X.Y.Z`);
});

const failing = (dev: boolean) =>
  Object.entries(lock.packages)
    .filter(([path, entry]) => path !== '' && Boolean(entry.dev) === dev)
    .map(([path, entry]) => ({ name: path.replace(/^.*node_modules\//, ''), path, range: Array.isArray(entry.engines) ? undefined : entry.engines?.node }))
    .filter((p) => p.range !== undefined && !satisfies(lowest!, p.range));

t.test('every run-time package accepts the lowest Node of the range', async (t) => {
  t.same(failing(false).map((p) => `${p.name} ${p.range}`), [], `all accept ${lowest}`);
});

t.test('development packages that declare a higher Node are named in README.md and use no newer API', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Development'));
  const tolerated = failing(true);
  t.ok(tolerated.length > 0, 'there are some today (kubernetes-models); when none is left, drop this note from the README');
  // APIs Node 21 and 22 added that a package could call at load or run time.
  const newer =
    /\bPromise\.withResolvers\b|\b(?:Object|Map)\.groupBy\b|\.(?:union|intersection|difference|symmetricDifference|isSubsetOf|isSupersetOf|isDisjointFrom)\(|\bIterator\.from\b|\bgetBuiltinModule\b|\bfs\.glob\b|\bglobSync\b|\bnavigator\.|\bWebSocket\b|\bprocess\.features\.require_module\b/;
  for (const p of tolerated) {
    t.ok(section.includes(`\`${p.name}\``), `README.md "Development" names ${p.name} (${p.range})`);
    const files = listFiles(join(ROOT, p.path)).filter((f) => /\.[cm]?js$/.test(f) && !f.includes('/node_modules/', join(ROOT, p.path).length));
    const users = files.filter((f) => newer.test(readFileSync(f, 'utf8')));
    t.same(users, [], `${p.name}: none of its ${files.length} files calls an API newer than Node 20`);
  }
});
