/**
 * The key set on its own, with a scripted source and a hand-moved clock: kept
 * while its source fails, fetched again at most once per cooldown and once for
 * any number of concurrent unknown kids, found through metadata that must name
 * the issuer.
 */
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, exportJWK, jwtVerify } from 'jose';
import t from 'tap';
import { KeySet, verifyWithKeySet, type FetchJson } from '../../src/introspection/jwks.js';

const ISSUER = 'https://as.example/t/acme';

async function key(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256' };
  const sign = () => new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'ES256', kid }).sign(privateKey);
  return { jwk, sign, privateKey };
}

function source(documents: Map<string, () => unknown>) {
  const asked: string[] = [];
  const fetchJson: FetchJson = async (url) => {
    asked.push(url);
    const document = documents.get(url);
    if (!document) throw new Error(`HTTP 404 from ${url}`);
    return document();
  };
  return { asked, fetchJson };
}

t.test('kept while the source is down; refreshed at most once per cooldown, for any number of unknown kids', async (t) => {
  const a = await key('a');
  const b = await key('b');
  let published: unknown[] = [a.jwk];
  let down = false;
  const { asked, fetchJson } = source(
    new Map([
      [
        'https://as.example/jwks',
        () => {
          if (down) throw new Error('ECONNREFUSED');
          return { keys: published };
        },
      ],
    ]),
  );
  let now = 1_000_000;
  const results: string[] = [];
  const keys = new KeySet({ issuer: ISSUER, jwksUri: 'https://as.example/jwks', cooldown: 30_000, fetchJson, clock: { now: () => now }, onFetch: (r) => results.push(r) });
  t.teardown(() => keys.close());
  t.equal(keys.loaded, false);
  await jwtVerify(await a.sign(), keys.getKey);
  t.equal(keys.loaded, true);

  published = [a.jwk, b.jwk];
  const tokenB = await b.sign();
  await t.rejects(jwtVerify(tokenB, keys.getKey), { code: 'ERR_JWKS_NO_MATCHING_KEY' }, 'a new kid within the cooldown of the last fetch');
  t.equal(asked.length, 1);
  now += 30_000;
  await Promise.all(Array.from({ length: 50 }, () => jwtVerify(tokenB, keys.getKey)));
  t.equal(asked.length, 2, 'fifty concurrent unknown kids: one fetch');

  down = true;
  now += 30_000;
  const tokenC = await (await key('c')).sign();
  await t.rejects(jwtVerify(tokenC, keys.getKey), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  t.equal(asked.length, 3, 'tried once');
  await jwtVerify(await a.sign(), keys.getKey);
  t.ok(keys.loaded, 'the keys fetched before still verify while the source is down');
  t.match(keys.lastProblem, /ECONNREFUSED/);
  t.same(results, ['success', 'success', 'failure']);
});

t.test('never loaded: an error of its own, retried in the background', async (t) => {
  let up = false;
  const a = await key('a');
  const { asked, fetchJson } = source(new Map([['https://as.example/jwks', () => {
    if (!up) throw new Error('ECONNREFUSED');
    return { keys: [a.jwk] };
  }]]));
  const keys = new KeySet({ issuer: ISSUER, jwksUri: 'https://as.example/jwks', cooldown: 0, fetchJson });
  t.teardown(() => keys.close());
  await t.rejects(jwtVerify(await a.sign(), keys.getKey), { code: 'ERR_KEYS_UNAVAILABLE' });
  up = true;
  // The retry comes by itself (at least 100 ms later): bounded wait.
  for (let i = 0; i < 100 && !keys.loaded; i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
  t.ok(keys.loaded, `loaded after ${asked.length} attempts`);
});

t.test('discovery: RFC 8414 then OpenID, and only metadata that names the issuer', async (t) => {
  const a = await key('a');
  const rfc8414 = 'https://as.example/.well-known/oauth-authorization-server/t/acme';
  const openid = 'https://as.example/t/acme/.well-known/openid-configuration';
  const jwks = 'https://keys.example/acme';
  {
    const { asked, fetchJson } = source(new Map<string, () => unknown>([[openid, () => ({ issuer: ISSUER, jwks_uri: jwks })], [jwks, () => ({ keys: [a.jwk] })]]));
    const keys = new KeySet({ issuer: ISSUER, jwksUri: null, cooldown: 0, fetchJson });
    t.teardown(() => keys.close());
    await jwtVerify(await a.sign(), keys.getKey);
    t.same(asked, [rfc8414, openid, jwks]);
  }
  {
    const { fetchJson } = source(new Map<string, () => unknown>([[rfc8414, () => ({ issuer: 'https://evil.example', jwks_uri: jwks })], [jwks, () => ({ keys: [a.jwk] })]]));
    const keys = new KeySet({ issuer: ISSUER, jwksUri: null, cooldown: 60_000, fetchJson });
    t.teardown(() => keys.close());
    await t.rejects(jwtVerify(await a.sign(), keys.getKey), { code: 'ERR_KEYS_UNAVAILABLE' });
    t.match(keys.lastProblem, /another issuer/);
  }
  {
    const { fetchJson } = source(new Map<string, () => unknown>([[rfc8414, () => ({ issuer: ISSUER, jwks_uri: 'http://keys.example/acme' })]]));
    const keys = new KeySet({ issuer: ISSUER, jwksUri: null, cooldown: 60_000, fetchJson, permitted: (url) => url.protocol === 'https:' });
    t.teardown(() => keys.close());
    await t.rejects(jwtVerify(await a.sign(), keys.getKey), { code: 'ERR_KEYS_UNAVAILABLE' });
    t.match(keys.lastProblem, /not https/);
  }
  {
    const { fetchJson } = source(new Map<string, () => unknown>([['https://as.example/jwks', () => ({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'a' }] })]]));
    const keys = new KeySet({ issuer: ISSUER, jwksUri: 'https://as.example/jwks', cooldown: 60_000, fetchJson });
    t.teardown(() => keys.close());
    const hs = await new SignJWT({}).setProtectedHeader({ alg: 'HS256', kid: 'a' }).sign(Buffer.from('secret'));
    await t.rejects(jwtVerify(hs, keys.getKey), 'a secret key in the set verifies nothing');
  }
});

t.test('a token without kid, two keys of its type in the set: each is tried', async (t) => {
  const a = await key('a');
  const b = await key('b');
  const noKid = ({ kid: _kid, ...jwk }: Record<string, unknown>) => jwk;
  const { fetchJson } = source(new Map<string, () => unknown>([['https://as.example/jwks', () => ({ keys: [noKid(a.jwk), noKid(b.jwk)] })]]));
  const keys = new KeySet({ issuer: ISSUER, jwksUri: 'https://as.example/jwks', cooldown: 60_000, fetchJson });
  t.teardown(() => keys.close());
  const kidless = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'ES256' }).sign(b.privateKey);
  await t.rejects(jwtVerify(kidless, keys.getKey), { code: 'ERR_JWKS_MULTIPLE_MATCHING_KEYS' }, 'what jose alone does');
  const verified = await verifyWithKeySet(kidless, keys.getKey, {});
  t.equal(verified.payload.sub, 'x', 'the second key of the set verified it');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const stranger = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
  await t.rejects(verifyWithKeySet(stranger, keys.getKey, {}), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, 'a key outside the set fails');
});
