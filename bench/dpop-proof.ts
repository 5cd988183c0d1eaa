/**
 * The per-request cost of a DPoP proof, in process: decide() on a cached
 * answer with a Bearer token against the same with a DPoP-bound token and a
 * fresh proof each time (h2load cannot send a new proof per request, and one
 * repeated proof is a replay), plus the verifier alone with its key cache and
 * without it. Proofs are made before the clock starts.
 *
 *   node --import=@tapjs/typescript/import.mjs bench/dpop-proof.ts [count]   (or from dist/)
 */
import type { AuthRequest } from '../src/auth-request.js';
import { DpopVerifier } from '../src/credentials/dpop.js';
import { DpopNonces } from '../src/credentials/dpop-nonce.js';
import { MemoryReplayStore } from '../src/credentials/replay-store.js';
import { decide, type DecideContext } from '../src/decide.js';
import type { Endpoint } from '../src/introspection/introspector.js';
import { compilePolicy, routeTable } from '../src/policy/compile.js';
import { createDpopKey, makeProof } from '../test/support/dpop.js';
import { testPolicy } from '../test/support/policy.js';

const count = Number(process.argv[2] ?? 5000);
const WARM_UP = 200;
const TOKEN = 'bench-token.DPoP_bound-0123456789abcdef';
const key = await createDpopKey('ES256');
const proofs: string[] = [];
for (let i = 0; i < count + WARM_UP; i += 1) proofs.push(await makeProof(key, { token: TOKEN }));

const endpoint = { name: 'as', cacheId: 'as', clientIdHeader: null, introspect: () => Promise.reject(new Error('unused')) } as unknown as Endpoint;
const policy = compilePolicy(testPolicy(), endpoint);
const bound = Object.freeze(Object.setPrototypeOf({ active: true, sub: 'alice', cnf: Object.freeze({ jkt: key.thumbprint }) }, null));
const plain = Object.freeze(Object.setPrototypeOf({ active: true, sub: 'alice' }, null));
const context = (claims: object): DecideContext => ({
  policies: new Map([['default', policy]]),
  defaultPolicy: policy,
  policySelector: 'policy',
  routes: routeTable([policy.config]),
  maxTokenLength: 4096,
  sender: { verifier: new DpopVerifier(), replay: new MemoryReplayStore({ maxEntries: 1_000_000 }), maxProofLength: 4096, nonces: new DpopNonces({ secret: Buffer.alloc(32, 7), lifetimeSeconds: 300 }) },
  introspect: async () => ({ result: { outcome: 'active', claims: claims as never, expiresAt: null }, cache: 'hit' }),
});
const request = (authorization: string, proof?: string): AuthRequest => ({
  headers: new Map([['authorization', [authorization]], ...(proof ? [['dpop', [proof]] as [string, string[]]] : [])]),
  contextExtensions: new Map(),
  method: 'GET',
  scheme: 'https',
  host: 'api.example.com',
  path: '/orders/42',
  requestId: null,
});
const signal = new AbortController().signal;

async function perCall(name: string, run: (i: number) => Promise<unknown>): Promise<void> {
  // Warm-up calls get indexes of their own: each proof is used once.
  for (let i = 0; i < WARM_UP; i += 1) await run(count + i);
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i += 1) await run(i);
  const micros = Number(process.hrtime.bigint() - started) / 1000 / count;
  console.log(`${name.padEnd(48)} ${micros.toFixed(1)} µs per call`);
}

const bearer = context(plain);
await perCall('decide, cached answer, Bearer', async () => {
  if (!(await decide(request(`Bearer ${TOKEN}`), bearer, signal)).allow) throw new Error('expected an allow');
});
const dpop = context(bound);
await perCall('decide, cached answer, DPoP (fresh proof each)', async (i) => {
  const decision = await decide(request(`DPoP ${TOKEN}`, proofs[i]), dpop, signal);
  if (!decision.allow) throw new Error(`expected an allow, got ${decision.reason}`);
});
const target = { method: 'GET', scheme: 'https', host: 'api.example.com', path: '/orders/42', token: TOKEN };
const rules = { algorithms: ['ES256'], windowSeconds: 60 };
const cached = new DpopVerifier();
await perCall('verify, key cache hit', async (i) => {
  if (!(await cached.verify(proofs[i]!, target, rules)).ok) throw new Error('expected a good proof');
});
await perCall('verify, key imported each time (no cache)', async (i) => {
  if (!(await new DpopVerifier().verify(proofs[i]!, target, rules)).ok) throw new Error('expected a good proof');
});
