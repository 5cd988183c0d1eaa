// The worked examples in README.md's Policies section are run, not just read:
// each YAML block loads with the real loader, and what the README says the
// upstream receives is what the pipeline decides.
import t from 'tap';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import type { AuthRequest } from '../src/auth-request.js';
import { buildConfig } from '../src/config/load.js';
import { decide, type DecideContext } from '../src/decide.js';
import type { Allow, Decision } from '../src/decision.js';
import type { IntrospectionResult } from '../src/introspection/result.js';
import { compilePolicies, routeTable } from '../src/policy/compile.js';
import { testSender } from './support/policy.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const start = readme.indexOf('\n### Worked examples\n');
const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
const fences = [...section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)];
const yamlBlocks = fences.filter((m) => m[1] === 'yaml').map((m) => m[2]!);
const headerBlocks = fences.filter((m) => m[1] === '').map((m) => m[2]!);
const answers = [...section.matchAll(/For[^`]*`(\{"active":true[^`]*\})`/g)].map((m) => JSON.parse(m[1]!) as Record<string, unknown>);

function context(yaml: string, answer: Record<string, unknown> | null): DecideContext {
  const raw = YAML.parse(yaml.replace('/var/run/secrets/isva/client-secret', new URL('../package.json', import.meta.url).pathname));
  const config = buildConfig(raw, 'README example', { env: {} });
  const endpoints = new Map(config.endpoints.map((e) => [e.name, { name: e.name, introspect: () => Promise.reject(new Error('unused')) }]));
  const policies = compilePolicies(config.policies, endpoints);
  const result: IntrospectionResult = answer
    ? { outcome: 'active', claims: Object.freeze({ ...answer }), expiresAt: null }
    : { outcome: 'inactive' };
  return {
    sender: testSender(),
    policies,
    defaultPolicy: policies.get(config.defaultPolicy)!,
    policySelector: config.policySelector,
    routes: routeTable(config.policies),
    maxTokenLength: 4096,
    introspect: async () => ({ result, cache: 'miss' }),
  };
}

function request(headers: Record<string, string>, host = 'api.example.com', path = '/'): AuthRequest {
  return {
    headers: new Map(Object.entries(headers).map(([k, v]) => [k, [v]])),
    contextExtensions: new Map(),
    method: 'GET',
    host,
    path,
    requestId: null,
  };
}

function upstream(decision: Decision): string {
  if (!decision.allow) throw new Error(`expected an allow, got ${decision.reason}`);
  return decision.headers.map((h) => `${h.name}: ${h.value}\n`).join('');
}

const run = (ctx: DecideContext, req: AuthRequest) => decide(req, ctx, new AbortController().signal);

t.test('the section holds three examples', async (t) => {
  t.equal(yamlBlocks.length, 3);
  t.equal(headerBlocks.length, 2);
  t.equal(answers.length, 2);
});

t.test('MuleSoft style', async (t) => {
  const ctx = context(yamlBlocks[0]!, answers[0]!);
  const allow = (await run(ctx, request({ authorization: 'Bearer abc', 'x-auth-username': 'admin', 'x-auth-roles': 'x' }))) as Allow;
  t.equal(upstream(allow), headerBlocks[0]);
  t.same(allow.removeHeaders, ['x-auth-roles', 'authorization']);
  const partner = await run(context(yamlBlocks[0]!, { ...answers[0]!, client_id: 'partner-x' }), request({ authorization: 'Bearer abc' }));
  t.equal(partner.allow === false && partner.reason, 'client_not_allowed');
  const narrow = await run(context(yamlBlocks[0]!, { ...answers[0]!, scope: 'orders:read' }), request({ authorization: 'Bearer abc' }));
  t.ok(!narrow.allow && section.includes(`\`WWW-Authenticate: ${narrow.challenge}\``), 'the documented challenge');
});

t.test('IBM Verify Access style', async (t) => {
  const ctx = context(yamlBlocks[1]!, answers[1]!);
  const allow = await run(ctx, request({ authorization: 'Bearer abc' }, 'isva-api.example.com', '/accounts'));
  t.equal(upstream(allow), headerBlocks[1]);
  const encoded = headerBlocks[1]!.match(/x-auth-attributes: (\S+)/)![1]!;
  const decoded = Buffer.from(encoded, 'base64url').toString('utf8');
  t.ok(section.includes(`\`${decoded}\``), 'the documented decoding');
  t.same((allow as Allow).metadata.attributes, JSON.parse(decoded));
  const { sub: _sub, ...noSub } = answers[1]!;
  const denied = await run(context(yamlBlocks[1]!, noSub), request({ authorization: 'Bearer abc' }, 'isva-api.example.com'));
  t.equal(denied.allow === false && denied.reason, 'policy_error');
});

t.test('Express Gateway style', async (t) => {
  const anonymous = await run(context(yamlBlocks[2]!, null), request({ 'x-auth-subject': 'admin' }, 'shop.example.com', '/catalog/items'));
  t.equal(upstream(anonymous), 'x-auth-status: anonymous\n');
  t.same((anonymous as Allow).removeHeaders, ['x-auth-subject']);
  const revoked = await run(context(yamlBlocks[2]!, null), request({ authorization: 'Bearer abc' }, 'shop.example.com', '/catalog/items'));
  t.equal(revoked.reason, 'pass_through');
  t.ok((revoked as Allow).removeHeaders.includes('authorization'), 'the revoked token does not reach the upstream');
  const known = await run(context(yamlBlocks[2]!, { active: true, sub: 'jdoe' }), request({ authorization: 'Bearer abc' }, 'shop.example.com', '/catalog/items'));
  t.equal(upstream(known), 'x-auth-subject: jdoe\n');
  const elsewhere = await run(context(yamlBlocks[2]!, null), request({}, 'shop.example.com', '/cart'));
  t.equal(elsewhere.allow === false && elsewhere.status, 401);
  const beside = await run(context(yamlBlocks[2]!, null), request({}, 'shop.example.com', '/catalog-admin'));
  t.equal(beside.allow === false && beside.status, 401, 'a path beside the catalogue is not anonymous');
});
