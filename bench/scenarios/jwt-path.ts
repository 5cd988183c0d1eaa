/**
 * JWT access tokens validated locally (kind: jwt): a cold Check (a token never
 * seen, so its RS256 signature is verified) and a cached one (a token seen
 * before), driven by the same Node gRPC loop as the cold introspection path, at
 * the same concurrency, so the two cold figures compare: how much a local
 * validation saves over an introspection call. The keys are served from this
 * process; tokens are signed here before the clock starts, all exactly
 * TOKEN_LENGTH characters (the request template's slot).
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK } from 'jose';
import { TOKEN_LENGTH } from '../check-request.js';
import type { Settings } from '../settings.js';
import { cpuWindow, msPerCheck, sampleCpu } from '../support/cpu.js';
import { decodeDecision, http2Client, isAllow, RequestTemplate } from '../support/raw-client.js';
import { decisionCounts, startService } from '../support/service.js';
import { loop, type LoopResult } from './cold-path.js';

export interface JwtPath {
  cold: LoopResult;
  cached: LoopResult;
  /** CPU ms the service spent per cold Check. */
  serviceCpuMsPerCold: number;
  /** The same over the cached loop (the Node client over one connection, unlike h2load's cached allow). */
  serviceCpuMsPerCached: number;
  jwksFetches: number;
  concurrency: number;
}

const ISSUER = 'https://idp.example.com/oauth2';
const AUDIENCE = 'https://api.example.com';
/** Most tokens signed for the cold loop (about 1 ms each to sign): a bound on the loop too. */
const MAX_TOKENS = 20_000;

/** Characters of an RS256 (2048-bit) signature in base64url. */
const SIGNATURE_LENGTH = 342;

/**
 * A signed at+jwt of exactly TOKEN_LENGTH characters, or undefined when this
 * kid's length cannot get there (base64 never grows by 1 for some lengths):
 * the pad claim is sized from the lengths, then the token signed once.
 */
async function signedToken(key: KeyObject, kid: string, i: number, exp: number): Promise<string | undefined> {
  const header = { alg: 'RS256', typ: 'at+jwt', kid };
  const claims = {
    iss: ISSUER,
    sub: `user-${i.toString(36).padStart(8, '0')}`,
    aud: AUDIENCE,
    client_id: 'web-portal',
    scope: 'openid profile orders:read orders:write',
    jti: randomBytes(12).toString('base64url'),
    iat: Math.floor(Date.now() / 1000),
    exp,
    pad: '',
  };
  const b64Length = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url').length;
  const fixed = b64Length(header) + 2 + SIGNATURE_LENGTH;
  for (let pad = 0; fixed + b64Length({ ...claims, pad: 'x'.repeat(pad) }) <= TOKEN_LENGTH; pad += 1) {
    if (fixed + b64Length({ ...claims, pad: 'x'.repeat(pad) }) !== TOKEN_LENGTH) continue;
    const token = await new SignJWT({ ...claims, pad: 'x'.repeat(pad) }).setProtectedHeader(header).sign(key);
    if (token.length !== TOKEN_LENGTH) throw new Error(`a token of ${token.length} characters, not ${TOKEN_LENGTH}`);
    return token;
  }
  return undefined;
}

export async function measureJwtPath(settings: Settings): Promise<JwtPath> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  // A kid of each length 8..10 may be needed for base64 to land on TOKEN_LENGTH exactly.
  const kids = ['bench-01', 'bench-012', 'bench-0123'];
  const jwks = { keys: await Promise.all(kids.map(async (kid) => ({ ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }))) };
  let fetches = 0;
  const server = createServer((_request, response) => {
    fetches += 1;
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const jwksUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
  const service = await startService({ idpUrl: jwksUri, maxCacheEntries: 250_000, jwt: { issuer: ISSUER, jwksUri, audience: AUDIENCE } });
  try {
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const count = Math.min(MAX_TOKENS, Math.max(2000, settings.durationS * 2000));
    const tokens: string[] = [];
    for (let i = 0; tokens.length < count; i += 1) {
      let token: string | undefined;
      for (const kid of kids) {
        token = await signedToken(privateKey, kid, i, exp);
        if (token !== undefined) break;
      }
      if (token === undefined) throw new Error('no token of the request template\'s length could be made');
      tokens.push(token);
    }
    const client = http2Client(service.address);
    const template = new RequestTemplate();
    const check = async (token: string, full: boolean) => {
      const answer = await client.check(template.withToken(token));
      return isAllow(answer) && (!full || decodeDecision(answer).allowed);
    };
    try {
      // Warm-up on tokens of their own (JIT, the key set), not counted.
      const warm = tokens.splice(0, 500);
      await loop(settings.coldConcurrency, 2, warm.length, (i) => check(warm[i]!, true));
      const pid = service.proc.child.pid!;
      const before = await service.metrics();
      const coldBefore = sampleCpu(pid);
      const cold = await loop(settings.coldConcurrency, settings.durationS, tokens.length, (i) => check(tokens[i]!, i % 64 === 0));
      const coldCpu = cpuWindow(coldBefore, sampleCpu(pid));
      const after = await service.metrics();
      const cachedBefore = sampleCpu(pid);
      const cached = await loop(settings.coldConcurrency, settings.durationS, Number.MAX_SAFE_INTEGER, (i) => check(warm[i % warm.length]!, i % 64 === 0));
      const cachedCpu = cpuWindow(cachedBefore, sampleCpu(pid));
      const allowed = (decisionCounts(after).reasons.ok ?? 0) - (decisionCounts(before).reasons.ok ?? 0);
      if (cold.errors > 0 || cold.wrong > 0 || cached.errors > 0 || cached.wrong > 0 || allowed !== cold.count) {
        throw new Error(`jwt path: ${cold.errors + cached.errors} failed RPCs, ${cold.wrong + cached.wrong} wrong decisions, ${allowed} allows for ${cold.count} cold Checks`);
      }
      return {
        cold,
        cached,
        serviceCpuMsPerCold: msPerCheck(coldCpu, cold.count),
        serviceCpuMsPerCached: msPerCheck(cachedCpu, cached.count),
        jwksFetches: fetches,
        concurrency: settings.coldConcurrency,
      };
    } finally {
      client.close();
    }
  } finally {
    await service.stop();
    server.close();
  }
}
