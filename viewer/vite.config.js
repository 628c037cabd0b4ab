// Builds the page of `streamsave view` into the Python package (streamsave/_view/static/),
// so installing streamsave never needs node. Rebuild: npm ci && npm run build
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  base: './',
  build: {
    outDir: '../streamsave/_view/static',
    emptyOutDir: true,
    chunkSizeWarningLimit: 4096,
    sourcemap: false,
  },
});
