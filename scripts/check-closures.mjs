#!/usr/bin/env node
// Fails when service or package code makes a generator function or a class inside a function body, i.e. once per
// call of that function, unless a `made-once:` comment on it says why that is rare (a factory run at startup).
//
// Why: V8 gives every such function object its own initial map (the shape of the objects it makes), allocated in
// the old generation, and that map points back at the function and so at everything its closure captured. A dead
// old object is only found dead by a full GC; until then young-generation GCs treat what it points to as alive. One
// async generator written inline in the router's request path kept every request's objects alive through every
// scavenge (~10 KB a request copied and promoted, 5 ms pauses; bench/gateway/README.md, "Stop 20"). Arrow functions,
// plain async functions and methods of a module-level class have no such map.
//
// Run: node scripts/check-closures.mjs [files...]   (default: every services/*/src and packages/*/src .ts file
// except tests, packages/testing and packages/cli); part of `npm run lint`.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ALLOW = /made-once:\s*\S/;

/** Every generator function or class that `text` makes inside a function body, without a `made-once:` comment. */
export function findPerCallClosures(text, fileName = "file.ts") {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found = [];
  const allowed = (node) => {
    // The node's own leading comments, or those of the statement or property it is part of.
    for (let n = node; n !== undefined && n !== source; n = n.parent) {
      const ranges = ts.getLeadingCommentRanges(text, n.getFullStart()) ?? [];
      if (ranges.some((r) => ALLOW.test(text.slice(r.pos, r.end)))) return true;
      if (ts.isStatement(n) || ts.isPropertyAssignment(n) || ts.isClassElement(n) || ts.isObjectLiteralElement(n))
        break;
    }
    return false;
  };
  const report = (node, what) => {
    if (allowed(node)) return;
    const { line, character } = source.getLineAndCharacterOfPosition(node.getStart());
    found.push({ file: fileName, line: line + 1, column: character + 1, what });
  };
  const visit = (node, inFunction) => {
    const isFunctionLike = ts.isFunctionLike(node) && node.body !== undefined;
    if (inFunction) {
      if (
        (ts.isFunctionDeclaration(node) || ts.isFunctionExpression(node) || ts.isMethodDeclaration(node)) &&
        node.asteriskToken
      )
        report(node, "generator function made per call");
      else if (ts.isClassDeclaration(node) || ts.isClassExpression(node)) report(node, "class made per call");
    }
    // A module-level class's methods are made once, with the class; what their bodies make is made per call.
    ts.forEachChild(node, (child) => visit(child, inFunction || (isFunctionLike && child === node.body)));
  };
  visit(source, false);
  return found;
}

function sourceFiles() {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".ts") && !name.endsWith(".d.ts") && !/\.test(-helpers)?\.ts$/.test(name)) out.push(path);
    }
  };
  for (const group of ["services", "packages"]) {
    for (const pkg of readdirSync(join(root, group))) {
      if (group === "packages" && (pkg === "testing" || pkg === "cli")) continue;
      const src = join(root, group, pkg, "src");
      try {
        if (statSync(src).isDirectory()) walk(src);
      } catch {
        // a package without src/
      }
    }
  }
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = process.argv.length > 2 ? process.argv.slice(2).map((f) => resolve(f)) : sourceFiles();
  const found = files.flatMap((f) => findPerCallClosures(readFileSync(f, "utf8"), relative(root, f)));
  for (const f of found) {
    console.error(
      `${f.file}:${f.line}:${f.column}: ${f.what}: hoist it to module level (or a class method), or say why it is ` +
        "rare with a `made-once:` comment",
    );
  }
  if (found.length > 0) process.exit(1);
  console.log(`check-closures: ${files.length} files, no generator function or class made per call`);
}
