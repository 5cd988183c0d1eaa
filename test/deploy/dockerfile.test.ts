// deploy/Dockerfile and .dockerignore, read without a Docker engine: a
// multi-stage build on Node 24, production dependencies only at run time, a
// numeric non-root user, the ports, the stop signal and the program's layout.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { DEPLOY, repoPath } from './lib/files.js';
import { dockerignored, dockerignorePatterns, execForm, parseDockerfile, stages } from './lib/dockerfile.js';

const instructions = parseDockerfile(readFileSync(`${DEPLOY}/Dockerfile`, 'utf8'));
const all = stages(instructions);
const runtime = all[all.length - 1]!;
const build = all[0]!;
const of = (keyword: string) => runtime.instructions.filter((i) => i.keyword === keyword);

t.test('the parser', async (t) => {
  const parsed = parseDockerfile('# c\nFROM a AS b\nRUN x \\\n  # note\n  && y\n\ncopy --from=b /x /y\n');
  t.same(
    parsed.map((i) => [i.keyword, i.args, i.line]),
    [
      ['FROM', 'a AS b', 2],
      ['RUN', 'x && y', 3],
      ['COPY', '--from=b /x /y', 7],
    ],
  );
  t.same(stages(parsed)[0]!.name, 'b');
  t.same(execForm('["a", "b"]'), ['a', 'b']);
  t.equal(execForm('a b'), null);
});

t.test('multi-stage, on Node 24', async (t) => {
  t.ok(all.length >= 2, `${all.length} stages`);
  for (const stage of all) t.match(stage.image, /^node:24([.-]|$)/, `${stage.name}: FROM node:24`);
  t.ok(build.instructions.some((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args) && !/--omit=dev/.test(i.args)), 'the build stage installs dev dependencies');
  t.ok(build.instructions.some((i) => i.keyword === 'RUN' && /\btsc -p tsconfig\.json\b/.test(i.args)), 'and compiles');
});

t.test('the runtime stage: production dependencies, the compiled program, protos, package.json', async (t) => {
  const installs = of('RUN').filter((i) => /\bnpm (ci|install)\b/.test(i.args));
  t.equal(installs.length, 1);
  t.match(installs[0]!.args, /npm ci\b.*--omit=dev/, 'npm ci --omit=dev');
  const copies = of('COPY').map((i) => i.args);
  t.ok(copies.some((c) => /^--from=build\s+\/app\/dist\/src\s+\.\/dist\/src$/.test(c)), 'dist/src from the build stage');
  t.ok(copies.some((c) => /^proto\s+\.\/proto$/.test(c)), 'proto/ (found by walking up from dist/src/envoy)');
  t.ok(copies.some((c) => /^package\.json\b/.test(c)), 'package.json (the version)');
  t.same(of('WORKDIR').map((i) => i.args), ['/app'], 'in /app: /app/dist/src, /app/proto, /app/package.json');
  t.notOk(runtime.instructions.some((i) => i.keyword === 'COPY' && /^\.\s/.test(i.args)), 'never the whole context');
});

t.test('runs as a numeric non-root user', async (t) => {
  const users = of('USER');
  t.equal(users.length, 1);
  const m = /^(\d+)(?::(\d+))?$/.exec(users[0]!.args);
  t.ok(m, 'numeric UID (runAsNonRoot can verify it)');
  t.not(Number(m?.[1]), 0, 'not root');
  t.ok(runtime.instructions.indexOf(users[0]!) > Math.max(...of('RUN').map((i) => runtime.instructions.indexOf(i))), 'after the last RUN');
});

t.test('ports, stop signal, entry point', async (t) => {
  t.same(of('EXPOSE').flatMap((i) => i.args.split(/\s+/)).sort(), ['9001', '9090']);
  t.same(of('STOPSIGNAL').map((i) => i.args), ['SIGTERM']);
  t.same(execForm(of('ENTRYPOINT')[0]!.args), ['node', 'dist/src/main.js'], 'exec form: node is PID 1 and gets SIGTERM');
  t.same(execForm(of('CMD')[0]!.args), ['--config', '/etc/introspection-authz/config.yaml']);
  t.notOk(of('VOLUME').length, 'no VOLUME: nothing is written at run time');
});

const ignore = dockerignorePatterns(readFileSync(repoPath('.dockerignore'), 'utf8'));

t.test('.dockerignore matching, as Docker does it', async (t) => {
  t.ok(dockerignored(['node_modules'], 'node_modules/a/b.js'), 'a folder takes its contents');
  t.ok(dockerignored(['**/x'], 'a/b/x'));
  t.ok(dockerignored(['**/x'], 'x'));
  t.notOk(dockerignored(['*', '!src'], 'src/a.ts'), 'an exception re-includes');
  t.ok(dockerignored(['*', '!src', '**/*.test.ts'], 'src/a.test.ts'), 'the last match wins');
  t.notOk(dockerignored(['*.md'], 'docs/a.md'), '* stays within a folder');
});

t.test('.dockerignore keeps the build context to what the image needs', async (t) => {
  for (const path of ['node_modules', 'node_modules/yaml/package.json', 'dist', 'dist/src/main.js', '.git', '.git/config', '.tap', 'coverage', 'test/deploy/yaml.test.ts', 'demo/demo.ts', 'README.md', 'deploy/kubernetes/overlays/example/client-secret.example', '.env']) {
    t.ok(dockerignored(ignore, path), `excludes ${path}`);
  }
  for (const path of ['package.json', 'package-lock.json', 'tsconfig.json', 'src/main.ts', 'src/config/schema.ts', 'proto/envoy/service/auth/v3/external_auth.proto']) {
    t.notOk(dockerignored(ignore, path), `keeps ${path}`);
  }
});
