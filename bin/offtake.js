#!/usr/bin/env node
// The published entry point: runs the compiled CLI (`npm run build` writes dist/).
import '../dist/cli/main.js';
