// Builds the addon twice with cmake-js: the auto build (CUDA when nvcc is found) into build/, and a CPU-only build
// into build-cpu/, so tests always exercise the CPU-only configuration too. FAIRPRUNE_CUDA=OFF makes the auto build
// CPU-only as well; FAIRPRUNE_CUDA_ARCHITECTURES (e.g. "90") narrows the CUDA targets.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const cmakeJs = join(dirname(createRequire(import.meta.url).resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const parallel = String(Math.max(1, availableParallelism()));

function cmakeJsRun(command, outDir, definitions) {
  const args = [cmakeJs, command, '--out', outDir, '--parallel', parallel, ...definitions];
  const result = spawnSync(process.execPath, args, { cwd: packageRoot, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`build-native: cmake-js ${command} failed for ${outDir}. Needs a C++17 compiler and CMake ≥ 3.18 on PATH.`);
    process.exit(result.status ?? 1);
  }
}

// configure runs every time (cheap when cached) so a changed FAIRPRUNE_CUDA or architecture list takes effect;
// `cmake-js compile` alone would reuse a stale configuration.
function build(outDir, cudaMode) {
  // Always passed (empty = CMake's default list) so an earlier custom list doesn't linger in the CMake cache.
  const definitions = [`--CDFAIRPRUNE_CUDA=${cudaMode}`,
    `--CDFAIRPRUNE_CUDA_ARCHITECTURES=${process.env.FAIRPRUNE_CUDA_ARCHITECTURES ?? ''}`];
  console.log(`build-native: ${outDir} (FAIRPRUNE_CUDA=${cudaMode})`);
  cmakeJsRun('configure', outDir, definitions);
  cmakeJsRun('build', outDir, definitions);
}

build('build', process.env.FAIRPRUNE_CUDA ?? 'AUTO');
build('build-cpu', 'OFF');
