// README.md's configuration reference must name every option the schema
// declares, and nothing the schema does not know; README.md and
// deploy/README.md render whole, with working links and valid examples.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import MarkdownIt from 'markdown-it';
import type Token from 'markdown-it/lib/token.mjs';
import YAML from 'yaml';
import { parseConfig } from '../src/config/load.js';
import { endpointSchema, policySchema, schema } from '../src/config/schema.js';
import { createTestPki } from './support/certificates.js';

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

// ------------------------------------------------------------------ rendered
// The raw-text checks above missed an unclosed fence that swallowed a table
// and two headings; these read README.md and deploy/README.md as a CommonMark
// viewer does (markdown-it), with GitHub's heading anchors.

const DOCUMENTS = ['README.md', 'deploy/README.md'];
const markdown = new MarkdownIt({ html: true });

interface Rendered {
  readonly file: string;
  readonly lines: string[];
  readonly tokens: Token[];
}

function rendered(file: string): Rendered {
  const text = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
  return { file, lines: text.split('\n'), tokens: markdown.parse(text, {}) };
}

/** Every token, children of inline tokens included. */
function* allTokens(tokens: readonly Token[]): Generator<Token> {
  for (const token of tokens) {
    yield token;
    if (token.children) yield* allTokens(token.children);
  }
}

/** GitHub's anchor for a heading text: lower case, punctuation other than "-" and "_" dropped, each space a "-". */
function githubSlug(text: string): string {
  return text.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replaceAll(' ', '-');
}

/** The anchors of a document's headings, duplicates numbered -1, -2 as GitHub does, plus explicit HTML ids. */
function anchors(doc: Rendered): Set<string> {
  const out = new Set<string>();
  const counts = new Map<string, number>();
  doc.tokens.forEach((token, i) => {
    if (token.type === 'heading_open') {
      const inline = doc.tokens[i + 1]!;
      const text = [...allTokens(inline.children ?? [])].filter((c) => c.type === 'text' || c.type === 'code_inline').map((c) => c.content).join('');
      const slug = githubSlug(text);
      const seen = counts.get(slug) ?? 0;
      counts.set(slug, seen + 1);
      out.add(seen === 0 ? slug : `${slug}-${seen}`);
    }
  });
  for (const token of allTokens(doc.tokens)) {
    if (token.type === 'html_block' || token.type === 'html_inline') for (const m of token.content.matchAll(/\b(?:id|name)="([^"]+)"/g)) out.add(m[1]!);
  }
  return out;
}

const FENCE_LINE = /^\s*(`{3,}|~{3,})/;

t.test('rendered: every fence is closed where the text says', async (t) => {
  for (const doc of DOCUMENTS.map(rendered)) {
    const fences = doc.tokens.filter((token) => token.type === 'fence');
    // A fence's first and last lines are its markers; a marker-looking line anywhere else was swallowed by an unclosed fence.
    const markers = new Set(fences.flatMap((fence) => [fence.map![0], fence.map![1] - 1]));
    const stray = doc.lines.flatMap((line, i) => (FENCE_LINE.test(line) && !markers.has(i) ? [`${doc.file}:${i + 1}: ${line.trim()}`] : []));
    t.same(stray, [], `${doc.file}: every fence line opens or closes a fence`);
    for (const fence of fences) {
      const last = doc.lines[fence.map![1] - 1] ?? '';
      t.ok(fence.map![1] - 1 > fence.map![0] && last.trim().startsWith(fence.markup), `${doc.file}:${fence.map![0] + 1}: the fence is closed`);
    }
  }
});

t.test('rendered: every in-page link names a heading', async (t) => {
  for (const doc of DOCUMENTS.map(rendered)) {
    const known = anchors(doc);
    const links = [...allTokens(doc.tokens)].filter((token) => token.type === 'link_open').map((token) => token.attrGet('href') ?? '');
    const broken = links.filter((href) => href.startsWith('#') && !known.has(decodeURIComponent(href.slice(1))));
    t.same(broken, [], `${doc.file}: ${links.filter((href) => href.startsWith('#')).length} in-page links`);
  }
});

t.test('rendered: GitHub heading anchors', async (t) => {
  t.equal(githubSlug('`policies[]`'), 'policies');
  t.equal(githubSlug('Dropping cached answers (admin)'), 'dropping-cached-answers-admin');
  t.equal(githubSlug('What Envoy must normalise'), 'what-envoy-must-normalise');
  t.equal(githubSlug('a_b - c.d'), 'a_b---cd');
  const doc: Rendered = { file: 'x.md', lines: [], tokens: markdown.parse('# Top\n## Top\n## Top\n', {}) };
  t.same([...anchors(doc)], ['top', 'top-1', 'top-2']);
});

t.test('rendered: every relative link points at a file of the repository', async (t) => {
  for (const doc of DOCUMENTS.map(rendered)) {
    const targets = [...allTokens(doc.tokens)]
      .flatMap((token) => (token.type === 'link_open' ? [token.attrGet('href')] : token.type === 'image' ? [token.attrGet('src')] : []))
      .filter((href): href is string => href !== null && href !== '' && !href.startsWith('#') && !/^[a-z][a-z0-9+.-]*:/i.test(href));
    const base = new URL(`../${doc.file}`, import.meta.url);
    const missing = targets.filter((href) => !existsSync(new URL(decodeURIComponent(href.split(/[?#]/)[0]!), base)));
    t.same(missing, [], `${doc.file}: ${targets.length} relative links`);
  }
});

t.test('rendered: every YAML block parses; service configurations pass check-config', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'authz-readme-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, 'readme-example-secret-0123456789abcdef');
  const caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, createTestPki().ca);
  const minimal = { endpoints: [{ name: 'idp', url: 'https://idp.example.com/introspect', authMethod: 'none' }] };
  let configs = 0;
  for (const doc of DOCUMENTS.map(rendered)) {
    for (const fence of doc.tokens.filter((token) => token.type === 'fence' && token.info.trim() === 'yaml')) {
      const where = `${doc.file}:${fence.map![0] + 1}`;
      const problems = YAML.parseAllDocuments(fence.content).flatMap((d) => [...d.errors, ...d.warnings]);
      if (!t.same(problems.map((p) => p.message), [], `${where}: parses`)) continue;
      const raw = YAML.parse(fence.content) as unknown;
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || !Object.keys(raw).every((key) => key in schema)) continue;
      // A fragment (only `policies`, only `server`) is checked inside the smallest whole file;
      // the files and variables it names exist, holding a secret (a CA certificate for caFile).
      const env: Record<string, string> = {};
      const fragment = raw as { policies?: Array<{ name?: unknown }>; defaultPolicy?: unknown };
      const defaultPolicy = fragment.defaultPolicy ?? ((fragment.policies?.length ?? 0) > 1 ? fragment.policies![0]!.name : undefined);
      const whole = JSON.parse(JSON.stringify({ ...minimal, ...raw, defaultPolicy }), (key, value: unknown) => {
        if (typeof value !== 'string') return value;
        if (key.endsWith('File')) return key === 'caFile' ? caFile : secretFile;
        if (key.endsWith('Env')) env[value] = 'readme-example-secret-0123456789abcdef';
        return value;
      }) as object;
      configs += 1;
      t.doesNotThrow(() => parseConfig(YAML.stringify(whole), where, { env }), `${where}: check-config accepts it`);
    }
  }
  t.ok(configs >= 8, `${configs} service configurations checked`);
});
