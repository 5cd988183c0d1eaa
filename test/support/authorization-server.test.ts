import t from 'tap';
import { request } from 'undici';
import { startAuthorizationServer } from './authorization-server.js';
import type { AuthorizationServer, ClientCredentials } from './authorization-server.js';

interface IntrospectionResult {
  status: number;
  body: Record<string, unknown>;
}

function basic({ clientId, clientSecret }: ClientCredentials): string {
  const enc = (v: string) => encodeURIComponent(v).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`;
}

async function introspectBasic(as: AuthorizationServer, token: string, creds = as.introspectors.basic): Promise<IntrospectionResult> {
  const res = await request(as.introspectionUrl, {
    method: 'POST',
    headers: {
      authorization: basic(creds),
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

async function introspectPost(as: AuthorizationServer, token: string, creds = as.introspectors.post): Promise<IntrospectionResult> {
  const res = await request(as.introspectionUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({
      token,
      token_type_hint: 'access_token',
      client_id: creds.clientId,
      client_secret: creds.clientSecret,
    }).toString(),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

t.test('authorization server fixture', async (t) => {
  const warnings: unknown[][] = [];
  const origWarn = console.warn;
  const origInfo = console.info;
  const origLog = console.log;
  console.warn = (...args: unknown[]) => void warnings.push(['warn', ...args]);
  console.info = (...args: unknown[]) => void warnings.push(['info', ...args]);
  console.log = (...args: unknown[]) => void warnings.push(['log', ...args]);
  t.teardown(() => {
    console.warn = origWarn;
    console.info = origInfo;
    console.log = origLog;
  });

  const as = await startAuthorizationServer({ accessTokenTtlSeconds: 600 });
  let closed = false;
  t.teardown(async () => {
    if (!closed) await as.close();
  });

  t.match(as.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.equal(as.introspectionUrl, `${as.issuer}/token/introspection`);
  t.equal(as.revocationUrl, `${as.issuer}/token/revocation`);
  t.equal(as.tokenUrl, `${as.issuer}/token`);
  t.ok(as.introspectors.basic.clientSecret.length >= 32);
  t.not(as.introspectors.basic.clientSecret, as.introspectors.post.clientSecret);
  t.equal(as.introspectionCount(), 0);

  const token = await as.issueToken({ scope: 'read write' });
  t.type(token, 'string');
  t.equal(token.split('.').length, 1, 'token is opaque, not a JWT');

  await t.test('client_secret_basic introspection', async (t) => {
    const { status, body } = await introspectBasic(as, token);
    t.equal(status, 200);
    t.match(body, {
      active: true,
      client_id: 'app-one',
      scope: 'read write',
      iss: as.issuer,
      token_type: 'Bearer',
      exp: Number,
      iat: Number,
    });
    t.equal((body.exp as number) - (body.iat as number), 600, 'configured TTL');
    t.comment(`introspection response: ${JSON.stringify(body)}`);
  });

  await t.test('client_secret_post introspection', async (t) => {
    const { status, body } = await introspectPost(as, token);
    t.equal(status, 200);
    t.match(body, { active: true, client_id: 'app-one', scope: 'read write' });
  });

  await t.test('other app client token, no scope', async (t) => {
    const other = await as.issueToken({ clientId: 'app-two' });
    const { body } = await introspectBasic(as, other);
    t.match(body, { active: true, client_id: 'app-two' });
    t.notOk('scope' in body, 'no scope requested -> none in response');
    const admin = await as.issueToken({ clientId: 'app-two', scope: 'admin' });
    t.match((await introspectPost(as, admin)).body, { active: true, client_id: 'app-two', scope: 'admin' });
  });

  await t.test('scopes outside the configured list are silently dropped (oidc-provider behaviour)', async (t) => {
    const odd = await as.issueToken({ scope: 'read orders:write' });
    t.match((await introspectBasic(as, odd)).body, { active: true, scope: 'read' });
  });

  await t.test('unknown application client is rejected locally', async (t) => {
    await t.rejects(as.issueToken({ clientId: 'nobody' }), /unknown application client/);
  });

  await t.test('unknown token is inactive', async (t) => {
    const { status, body } = await introspectBasic(as, 'not-a-real-token-value-at-all');
    t.equal(status, 200);
    t.same(body, { active: false });
  });

  await t.test('wrong introspection credentials -> 401', async (t) => {
    const basicWrong = await introspectBasic(as, token, { ...as.introspectors.basic, clientSecret: 'wrong' });
    t.equal(basicWrong.status, 401);
    t.match(basicWrong.body, { error: 'invalid_client' });
    t.comment(`basic wrong secret: ${basicWrong.status} ${JSON.stringify(basicWrong.body)}`);

    const postWrong = await introspectPost(as, token, { ...as.introspectors.post, clientSecret: 'wrong' });
    t.equal(postWrong.status, 401);
    t.match(postWrong.body, { error: 'invalid_client' });
    t.comment(`post wrong secret: ${postWrong.status} ${JSON.stringify(postWrong.body)}`);

    const unknownClient = await introspectBasic(as, token, { clientId: 'nobody', clientSecret: 'x' });
    t.equal(unknownClient.status, 401);
    t.comment(`unknown client: ${unknownClient.status} ${JSON.stringify(unknownClient.body)}`);

    // oidc-provider treats client_secret_basic and client_secret_post as interchangeable for a
    // secret-based client, whatever token_endpoint_auth_method it is registered with.
    const otherMethod = await introspectPost(as, token, as.introspectors.basic);
    t.equal(otherMethod.status, 200);
    t.match(otherMethod.body, { active: true });

    const missing = await request(as.introspectionUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }).toString(),
    });
    const missingBody = await missing.body.text();
    t.equal(missing.statusCode, 400);
    t.comment(`no client authentication: ${missing.statusCode} ${missingBody}`);
  });

  await t.test('revocation makes the token inactive', async (t) => {
    const victim = await as.issueToken({ scope: 'read' });
    t.match((await introspectBasic(as, victim)).body, { active: true });
    await as.revoke(victim);
    t.same((await introspectBasic(as, victim)).body, { active: false });
    t.same((await introspectPost(as, victim)).body, { active: false });
    // the original token is unaffected
    t.match((await introspectBasic(as, token)).body, { active: true });
  });

  await t.test('introspectionCount counts endpoint hits', async (t) => {
    const before = as.introspectionCount();
    await introspectBasic(as, token);
    t.equal(as.introspectionCount(), before + 1);
    await introspectPost(as, token);
    t.equal(as.introspectionCount(), before + 2);
    await as.issueToken();
    t.equal(as.introspectionCount(), before + 2, 'token endpoint not counted');
    // 1 + 1 + 2 + 1 (odd scope) + 1 (unknown) + 5 (bad creds) + 4 (revocation) before this subtest
    t.equal(before, 15);
  });

  await t.test('close is fast, even with keep-alive sockets', async (t) => {
    const start = Date.now();
    await as.close();
    closed = true;
    t.ok(Date.now() - start < 500, `closed in ${Date.now() - start} ms`);
    await t.rejects(as.issueToken());
  });

  t.same(warnings, [], 'nothing printed to console');
});

t.test('expired tokens are inactive (ttl 1s)', async (t) => {
  const as = await startAuthorizationServer({
    accessTokenTtlSeconds: 1,
    clients: [{ clientId: 'short', scope: 'read' }],
    scopes: ['read', 'admin'],
  });
  t.teardown(() => as.close());
  t.same(as.appClients.map((c) => c.clientId), ['short']);
  await t.rejects(as.issueToken({ scope: 'admin' }), /HTTP 400 .*invalid_scope/, 'configured scope not allowed for client');
  const token = await as.issueToken({ scope: 'read' });
  t.match((await introspectBasic(as, token)).body, { active: true, client_id: 'short', scope: 'read' });
  await new Promise((r) => setTimeout(r, 2100));
  t.same((await introspectBasic(as, token)).body, { active: false });
});
