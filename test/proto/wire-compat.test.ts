// Proves that our hand-written protos under proto/ are wire-compatible with
// the upstream Envoy / googleapis protos vendored by @grpc/grpc-js-xds:
//  * structurally: every message, field, enum value and service method we
//    define exists upstream under the same fully qualified name with the same
//    field number, type, label/map-ness and oneof membership;
//  * behaviourally: messages encoded with one definition decode identically
//    with the other;
//  * and that @grpc/proto-loader + grpc-js can load our files.
import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';

const here = dirname(fileURLToPath(import.meta.url));
const projectRoot = resolve(here, '..', '..');
const protoRoot = join(projectRoot, 'proto');

const require = createRequire(import.meta.url);
const xdsDeps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const upstreamIncludes = ['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate'].map((d) =>
  join(xdsDeps, d),
);
// protobufjs bundles descriptor.proto as a file, not in its built-in table.
const protobufjsDir = dirname(require.resolve('protobufjs/package.json'));

/** All .proto files under dir, as paths relative to dir. */
function listProtos(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listProtos(full, base));
    else if (entry.name.endsWith('.proto')) out.push(relative(base, full).split('\\').join('/'));
  }
  return out.sort();
}

/** A Root that resolves imports against the given include directories. */
function makeRoot(includes: string[]): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (origin: string, target: string): string | null => {
    if (isAbsolute(target)) return target;
    for (const dir of [...includes, protobufjsDir]) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    // Fall back to protobufjs's default (relative to the importing file).
    return protobuf.util.path.resolve(origin, target);
  };
  return root;
}

const loadOpts = { keepCase: true };

const ourFiles = listProtos(protoRoot);
const ours = makeRoot([protoRoot]).loadSync(
  ourFiles.map((f) => join(protoRoot, f)),
  loadOpts,
);
ours.resolveAll();

const envoyApi = upstreamIncludes[0]!;
const upstreamFiles = readdirSync(join(envoyApi, 'envoy/service/auth/v3'))
  .filter((f) => f.endsWith('.proto'))
  .map((f) => join(envoyApi, 'envoy/service/auth/v3', f));
const upstream = makeRoot(upstreamIncludes).loadSync(upstreamFiles, loadOpts);
upstream.resolveAll();

// grpc.health.v1 is not vendored upstream anywhere in node_modules; it is
// checked against the well-known standard definition further below.
const NOT_UPSTREAM = ['.google.protobuf.', '.grpc.health.'];

type Reflected = protobuf.Type | protobuf.Enum | protobuf.Service;

/** Every Type / Enum / Service reachable from ns, depth first. */
function collect(ns: protobuf.NamespaceBase, out: Reflected[] = []): Reflected[] {
  for (const obj of ns.nestedArray) {
    if (obj instanceof protobuf.Type || obj instanceof protobuf.Enum || obj instanceof protobuf.Service) {
      out.push(obj);
    }
    if (obj instanceof protobuf.Namespace) collect(obj, out); // Type/Service extend Namespace
  }
  return out;
}

const ourDefs = collect(ours).filter((d) => !NOT_UPSTREAM.some((p) => d.fullName.startsWith(p)));

function typeName(field: protobuf.Field): string {
  return field.resolvedType ? field.resolvedType.fullName : field.type;
}

/**
 * Upstream fields in messages we define that we deliberately do not declare.
 * If upstream gains a field, the completeness test names it so that someone
 * decides whether to add it here or to our proto.
 */
const KNOWN_OMISSIONS = new Set([
  // Deprecated since 3.0 in favour of CheckResponse.dynamic_metadata; we keep
  // field 3 `reserved` instead.
  '.envoy.service.auth.v3.OkHttpResponse.dynamic_metadata',
]);

t.test('our protos load and define the expected packages', async (t) => {
  t.same(ourFiles, [
    'envoy/config/core/v3/address.proto',
    'envoy/config/core/v3/base.proto',
    'envoy/service/auth/v3/attribute_context.proto',
    'envoy/service/auth/v3/external_auth.proto',
    'envoy/type/v3/http_status.proto',
    'google/rpc/status.proto',
    'grpc/health/v1/health.proto',
  ]);
  // Sanity: the walk found a meaningful number of definitions to compare.
  t.ok(ourDefs.length >= 20, `compared ${ourDefs.length} definitions`);
  t.ok(ours.lookupType('envoy.service.auth.v3.CheckRequest'));
  t.ok(upstream.lookupType('envoy.service.auth.v3.CheckRequest'));
});

t.test('every message, field and enum value matches upstream', async (t) => {
  for (const def of ourDefs) {
    const name = def.fullName;
    const up = upstream.lookup(name);
    if (!t.ok(up, `upstream defines ${name}`) || !up) continue;

    if (def instanceof protobuf.Enum) {
      if (!t.ok(up instanceof protobuf.Enum, `${name} is an enum upstream`)) continue;
      // Enums must be identical in both directions: a value we lack could be
      // sent by Envoy / expected by Envoy.
      t.same(def.values, (up as protobuf.Enum).values, `${name} values equal upstream`);
      continue;
    }

    if (def instanceof protobuf.Service) {
      if (!t.ok(up instanceof protobuf.Service, `${name} is a service upstream`)) continue;
      const upSvc = up as protobuf.Service;
      for (const m of def.methodsArray) {
        m.resolve();
        const um = upSvc.methods[m.name];
        if (!t.ok(um, `${name}.${m.name} exists upstream`) || !um) continue;
        um.resolve();
        t.equal(m.resolvedRequestType?.fullName, um.resolvedRequestType?.fullName, `${name}.${m.name} request type`);
        t.equal(m.resolvedResponseType?.fullName, um.resolvedResponseType?.fullName, `${name}.${m.name} response type`);
        t.equal(!!m.requestStream, !!um.requestStream, `${name}.${m.name} request streaming`);
        t.equal(!!m.responseStream, !!um.responseStream, `${name}.${m.name} response streaming`);
      }
      continue;
    }

    // Message type.
    if (!t.ok(up instanceof protobuf.Type, `${name} is a message upstream`)) continue;
    const upType = up as protobuf.Type;
    for (const f of def.fieldsArray) {
      const where = `${name}.${f.name}`;
      const uf = upType.fields[f.name];
      if (!t.ok(uf, `${where} exists upstream`) || !uf) continue;
      t.equal(f.id, uf.id, `${where} field number`);
      t.equal(typeName(f), typeName(uf), `${where} type`);
      t.equal(f.repeated, uf.repeated, `${where} repeated`);
      t.equal(f.map, uf.map, `${where} map`);
      if (f instanceof protobuf.MapField) {
        t.equal(f.keyType, (uf as unknown as protobuf.MapField).keyType, `${where} map key type`);
      }
      t.equal(f.partOf?.name, uf.partOf?.name, `${where} oneof`);
    }
    // Our reserved numbers must not hide a live upstream field.
    for (const r of def.reserved ?? []) {
      if (typeof r === 'string') continue;
      const [lo = 0, hi = -1] = r;
      for (const uf of upType.fieldsArray) {
        if (uf.id >= lo && uf.id <= hi) {
          t.equal(uf.options?.deprecated, true, `${name} reserves ${uf.id}, upstream ${uf.name} is deprecated`);
        }
      }
    }
  }
});

t.test('we declare every upstream field of the messages we define (or know why not)', async (t) => {
  const seenOmissions: string[] = [];
  for (const def of ourDefs) {
    if (!(def instanceof protobuf.Type)) continue;
    const up = upstream.lookup(def.fullName);
    if (!(up instanceof protobuf.Type)) continue;
    for (const uf of up.fieldsArray) {
      if (def.fields[uf.name]) continue;
      const id = `${def.fullName}.${uf.name}`;
      seenOmissions.push(id);
      t.ok(KNOWN_OMISSIONS.has(id), `upstream field ${id} = ${uf.id} is missing from our proto`);
    }
  }
  t.same(seenOmissions.sort(), [...KNOWN_OMISSIONS].sort(), 'known omissions are still upstream');
});

t.test('grpc.health.v1 matches the standard definition', async (t) => {
  const req = ours.lookupType('grpc.health.v1.HealthCheckRequest');
  t.same(
    req.fieldsArray.map((f) => [f.name, f.id, f.type, f.repeated]),
    [['service', 1, 'string', false]],
  );
  const res = ours.lookupType('grpc.health.v1.HealthCheckResponse');
  t.same(
    res.fieldsArray.map((f) => [f.name, f.id, typeName(f), f.repeated]),
    [['status', 1, '.grpc.health.v1.HealthCheckResponse.ServingStatus', false]],
  );
  t.same(ours.lookupEnum('grpc.health.v1.HealthCheckResponse.ServingStatus').values, {
    UNKNOWN: 0,
    SERVING: 1,
    NOT_SERVING: 2,
    SERVICE_UNKNOWN: 3,
  });
  const svc = ours.lookupService('grpc.health.v1.Health');
  svc.resolveAll();
  t.same(
    svc.methodsArray.map((m) => [
      m.name,
      m.resolvedRequestType?.fullName,
      m.resolvedResponseType?.fullName,
      !!m.requestStream,
      !!m.responseStream,
    ]),
    [
      ['Check', '.grpc.health.v1.HealthCheckRequest', '.grpc.health.v1.HealthCheckResponse', false, false],
      ['Watch', '.grpc.health.v1.HealthCheckRequest', '.grpc.health.v1.HealthCheckResponse', false, true],
    ],
  );
});

const toObjOpts: protobuf.IConversionOptions = {
  longs: String,
  enums: String,
  bytes: String,
  defaults: false,
  oneofs: true,
};

/**
 * Encode `value` with `from`'s definition of `name`, decode with `to`'s, and
 * return both decoded views plus the re-encoded bytes.
 */
function crossDecode(
  t: { ok: (found: unknown, message: string) => unknown },
  from: protobuf.Root, to: protobuf.Root, name: string, value: Record<string, unknown>) {
  const fromType = from.lookupType(name);
  const toType = to.lookupType(name);
  // fromObject (not verify) because the samples use enum names and string longs.
  const bytes = fromType.encode(fromType.fromObject(value)).finish();
  t.ok(bytes.length > 0, `${name} sample encodes`);
  const decodedTo = toType.decode(bytes);
  const decodedFrom = fromType.decode(bytes);
  return {
    bytes: Buffer.from(bytes),
    viaTo: toType.toObject(decodedTo, toObjOpts),
    viaFrom: fromType.toObject(decodedFrom, toObjOpts),
    reencoded: Buffer.from(toType.encode(decodedTo).finish()),
  };
}

t.test('CheckRequest encoded with upstream decodes identically with ours', async (t) => {
  const sample = {
    attributes: {
      source: {
        address: { socket_address: { protocol: 'TCP', address: '10.1.2.3', port_value: 54321 } },
        principal: 'spiffe://cluster.local/ns/default/sa/client',
        certificate: '-----BEGIN%20CERTIFICATE-----',
        labels: { app: 'client' },
        service: 'client-svc',
      },
      destination: {
        address: { pipe: { path: '/var/run/envoy.sock', mode: 0o600 } },
      },
      request: {
        time: { seconds: 1700000000, nanos: 123456789 },
        http: {
          id: '1234567890',
          method: 'POST',
          headers: {
            ':authority': 'api.example.com',
            ':path': '/v1/things?x=1',
            ':method': 'POST',
            authorization: 'Bearer abc.def.ghi',
          },
          header_map: {
            headers: [
              { key: ':authority', raw_value: Buffer.from('api.example.com') },
              { key: 'authorization', raw_value: Buffer.from('Bearer \xff\x00binary', 'latin1') },
              { key: 'x-plain', value: 'plain' },
            ],
          },
          path: '/v1/things?x=1',
          host: 'api.example.com',
          scheme: 'https',
          query: 'x=1',
          fragment: 'frag',
          size: '9007199254740993', // > 2^53: exercises int64 handling
          protocol: 'HTTP/2',
          body: '{"a":1}',
          raw_body: Buffer.from([0, 1, 2, 253, 254, 255]),
        },
      },
      context_extensions: { tenant: 'acme', route: 'things' },
      metadata_context: {
        filter_metadata: {
          'envoy.filters.http.jwt_authn': {
            fields: { sub: { stringValue: 'user-1' }, n: { numberValue: 3 } },
          },
        },
        typed_filter_metadata: {
          'com.example': {
            type_url: 'type.googleapis.com/google.protobuf.StringValue',
            value: Buffer.from([0x0a, 0x01, 0x78]),
          },
        },
      },
      route_metadata_context: {
        filter_metadata: { r: { fields: { flag: { boolValue: true } } } },
      },
      tls_session: { sni: 'api.example.com' },
    },
  };

  const { bytes, viaTo, viaFrom, reencoded } = crossDecode(t, upstream, ours, 'envoy.service.auth.v3.CheckRequest', sample);
  t.same(viaTo, viaFrom, 'ours decodes exactly what upstream decodes');
  t.ok(bytes.equals(reencoded), 'ours re-encodes to identical bytes (no unknown fields dropped)');

  // Spot-check values explicitly so the test does not rely on equality alone.
  const http = viaTo.attributes.request.http;
  t.equal(http.headers[':authority'], 'api.example.com');
  t.equal(http.headers[':path'], '/v1/things?x=1');
  t.equal(http.headers.authorization, 'Bearer abc.def.ghi');
  t.equal(Buffer.from(http.header_map.headers[1].raw_value, 'base64').toString('latin1'), 'Bearer \xff\x00binary');
  t.equal(http.header_map.headers[2].value, 'plain');
  t.equal(http.size, '9007199254740993');
  t.equal(Buffer.from(http.raw_body, 'base64').toString('hex'), '000102fdfeff');
  t.same(viaTo.attributes.request.time, { seconds: '1700000000', nanos: 123456789 });
  t.same(viaTo.attributes.context_extensions, { tenant: 'acme', route: 'things' });
  t.equal(viaTo.attributes.source.principal, 'spiffe://cluster.local/ns/default/sa/client');
  t.same(viaTo.attributes.source.address, {
    socket_address: { protocol: 'TCP', address: '10.1.2.3', port_value: 54321, port_specifier: 'port_value' },
    address: 'socket_address',
  });
  t.same(viaTo.attributes.destination.address.pipe, { path: '/var/run/envoy.sock', mode: 0o600 });
  t.equal(viaTo.attributes.tls_session.sni, 'api.example.com');
  t.equal(
    viaTo.attributes.metadata_context.filter_metadata['envoy.filters.http.jwt_authn'].fields.sub.stringValue,
    'user-1',
  );
  t.equal(viaTo.attributes.metadata_context.typed_filter_metadata['com.example'].value, 'CgF4');
  t.equal(viaTo.attributes.route_metadata_context.filter_metadata.r.fields.flag.boolValue, true);
});

t.test('CheckResponse encoded with ours decodes identically with upstream', async (t) => {
  const okSample = {
    status: { code: 0 },
    ok_response: {
      headers: [
        {
          header: { key: 'x-user-id', value: 'user-1' },
          append: { value: false },
          append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
        },
        {
          header: { key: 'x-empty', value: '' },
          append_action: 'ADD_IF_ABSENT',
          keep_empty_value: true,
        },
      ],
      headers_to_remove: ['authorization', 'cookie'],
      response_headers_to_add: [{ header: { key: 'x-authz', value: 'ok' }, append_action: 'OVERWRITE_IF_EXISTS' }],
      query_parameters_to_set: [{ key: 'tenant', value: 'acme' }],
      query_parameters_to_remove: ['access_token'],
    },
    // NB: protobufjs's built-in google.protobuf.Value uses camelCase field
    // names (stringValue, ...) even with keepCase; Any keeps type_url.
    dynamic_metadata: {
      fields: {
        sub: { stringValue: 'user-1' },
        scope: { listValue: { values: [{ stringValue: 'read' }, { stringValue: 'write' }] } },
        exp: { numberValue: 1700003600 },
        active: { boolValue: true },
        nested: { structValue: { fields: { k: { nullValue: 'NULL_VALUE' } } } },
      },
    },
  };
  const ok = crossDecode(t, ours, upstream, 'envoy.service.auth.v3.CheckResponse', okSample);
  t.same(ok.viaTo, ok.viaFrom, 'upstream decodes exactly what ours decodes');
  t.ok(ok.bytes.equals(ok.reencoded), 'upstream re-encodes to identical bytes');
  const okr = ok.viaTo.ok_response;
  t.equal(ok.viaTo.http_response, 'ok_response');
  // A present-but-false BoolValue must survive: it is not the same as unset.
  t.not(okr.headers[0].append, undefined, 'append wrapper present');
  t.equal(okr.headers[0].append.value ?? false, false, 'append wrapper holds false');
  t.equal(okr.headers[0].append_action, 'OVERWRITE_IF_EXISTS_OR_ADD');
  t.equal(okr.headers[1].append, undefined, 'append absent when not set');
  t.equal(okr.headers[1].append_action, 'ADD_IF_ABSENT');
  t.equal(okr.headers[1].keep_empty_value, true);
  t.same(okr.headers_to_remove, ['authorization', 'cookie']);
  t.equal(okr.response_headers_to_add[0].append_action, 'OVERWRITE_IF_EXISTS');
  t.same(okr.query_parameters_to_set, [{ key: 'tenant', value: 'acme' }]);
  t.same(okr.query_parameters_to_remove, ['access_token']);
  t.same(
    ok.viaTo.dynamic_metadata.fields.scope.listValue.values.map((v: { stringValue: string }) => v.stringValue),
    ['read', 'write'],
  );
  t.equal(ok.viaTo.dynamic_metadata.fields.nested.structValue.fields.k.nullValue, 'NULL_VALUE');
  t.not(ok.viaTo.status, undefined, 'status present');
  t.equal(ok.viaTo.status.code ?? 0, 0, 'status code OK');
  // Enum numbers, not just names: decode with numeric enums too.
  const upOk = upstream.lookupType('envoy.service.auth.v3.CheckResponse').decode(ok.bytes);
  const numeric = upstream.lookupType('envoy.service.auth.v3.CheckResponse').toObject(upOk, { enums: Number });
  t.equal(numeric.ok_response.headers[0].append_action, 2);

  const deniedSample = {
    status: {
      code: 16, // UNAUTHENTICATED
      message: 'token inactive',
      details: [{ type_url: 'type.googleapis.com/google.protobuf.StringValue', value: Buffer.from([0x0a, 0x01, 0x79]) }],
    },
    denied_response: {
      status: { code: 'Unauthorized' },
      headers: [
        {
          header: { key: 'www-authenticate', value: 'Bearer error="invalid_token"' },
          append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
        },
      ],
      body: '{"error":"invalid_token"}',
    },
  };
  const denied = crossDecode(t, ours, upstream, 'envoy.service.auth.v3.CheckResponse', deniedSample);
  t.same(denied.viaTo, denied.viaFrom, 'upstream decodes exactly what ours decodes');
  t.ok(denied.bytes.equals(denied.reencoded), 'upstream re-encodes to identical bytes');
  t.equal(denied.viaTo.http_response, 'denied_response');
  t.equal(denied.viaTo.denied_response.status.code, 'Unauthorized');
  t.equal(denied.viaTo.denied_response.body, '{"error":"invalid_token"}');
  t.equal(denied.viaTo.denied_response.headers[0].header.key, 'www-authenticate');
  t.equal(denied.viaTo.status.code, 16);
  t.equal(denied.viaTo.status.message, 'token inactive');
  t.equal(denied.viaTo.status.details[0].value, 'CgF5');
  const upDenied = upstream.lookupType('envoy.service.auth.v3.CheckResponse').decode(denied.bytes);
  const deniedNum = upstream.lookupType('envoy.service.auth.v3.CheckResponse').toObject(upDenied, { enums: Number });
  t.equal(deniedNum.denied_response.status.code, 401);
});

t.test('@grpc/proto-loader + grpc-js load our protos', async (t) => {
  const def = await protoLoader.load(
    ['envoy/service/auth/v3/external_auth.proto', 'grpc/health/v1/health.proto'],
    {
      includeDirs: [protoRoot],
      keepCase: true,
      longs: String,
      enums: Number,
      defaults: false,
      oneofs: true,
    },
  );
  // grpc-js types the result loosely; walk it as plain objects.
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: { service: grpc.ServiceDefinition } } } } };
    grpc: { health: { v1: { Health: { service: grpc.ServiceDefinition } } } };
  };
  const authz = pkg.envoy.service.auth.v3.Authorization.service;
  t.ok(authz, 'envoy.service.auth.v3.Authorization.service');
  t.equal(authz.Check?.path, '/envoy.service.auth.v3.Authorization/Check');
  t.equal(authz.Check?.requestStream, false);
  t.equal(authz.Check?.responseStream, false);

  const health = pkg.grpc.health.v1.Health.service;
  t.ok(health, 'grpc.health.v1.Health.service');
  t.equal(health.Check?.path, '/grpc.health.v1.Health/Check');
  t.equal(health.Watch?.path, '/grpc.health.v1.Health/Watch');
  t.equal(health.Check?.responseStream, false);
  t.equal(health.Watch?.responseStream, true);
  t.equal(health.Watch?.requestStream, false);

  // The loader's serializers should interoperate with upstream bytes too.
  const upReq = upstream.lookupType('envoy.service.auth.v3.CheckRequest');
  const bytes = Buffer.from(
    upReq
      .encode(
        upReq.fromObject({
          attributes: { request: { http: { headers: { ':path': '/x' }, size: 42 } } },
        }),
      )
      .finish(),
  );
  const decoded = authz.Check!.requestDeserialize(bytes) as {
    attributes: { request: { http: { headers: Record<string, string>; size: string } } };
  };
  t.equal(decoded.attributes.request.http.headers[':path'], '/x');
  t.equal(decoded.attributes.request.http.size, '42');

  // And the loader's response serializer produces bytes upstream understands,
  // including the camelCase google.protobuf.Value fields.
  const resBytes = authz.Check!.responseSerialize({
    status: { code: 7, message: 'denied' },
    denied_response: { status: { code: 403 }, body: 'no' },
    dynamic_metadata: { fields: { sub: { stringValue: 'u1' } } },
  });
  const upRes = upstream.lookupType('envoy.service.auth.v3.CheckResponse');
  const res = upRes.toObject(upRes.decode(resBytes), { enums: Number, oneofs: true });
  t.equal(res.http_response, 'denied_response');
  t.equal(res.denied_response.status.code, 403);
  t.equal(res.denied_response.body, 'no');
  t.equal(res.status.code, 7);
  t.equal(res.dynamic_metadata.fields.sub.stringValue, 'u1');

  const hres = health.Check!.responseSerialize({ status: 1 });
  t.same(Buffer.from(hres), Buffer.from([0x08, 0x01]), 'HealthCheckResponse{status: SERVING} wire bytes');
});
