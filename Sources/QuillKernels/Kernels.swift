import CQuillKernels
import Foundation

/// The numeric kernels of the forward pass. Each takes whole buffers plus element offsets and
/// explicit sizes, checks its bounds once, then runs on raw pointers. Nothing here allocates.
public enum Kernels {
    // MARK: Projections

    /// Y (n, W.rows) = X (n, W.cols) · Wᵀ, with X starting at `inputOffset` and Y at
    /// `outputOffset`. Up to 16 rows stream the weights once (memory-bound); a larger block uses
    /// the blocked products of gemm_kernels.h (or sgemm without AVX-512), which read each weight
    /// once for the whole block. Int8 weights, GGUF blocks and blocked products need `scratch`
    /// (for GGUF blocks with room for `cols` and for every worker of `pool`).
    /// With a `pool`, the weight rows are split into chunks computed in parallel.
    ///
    /// `independentRows`: every output row is computed exactly (to the bit) as it would be if
    /// its input row were passed alone with `rows: 1`, whatever `n`, the pool and its chunks.
    /// Any number of rows then streams the weights, 16 rows at a time (never the blocked products,
    /// sgemm, or float activations for int8 weights), so it is for decoding, where a sequence's
    /// tokens must not depend on which others share its step. Int8 weights and quantized GGUF
    /// blocks quantize all `n` input rows into `scratch`, which needs room for n rows.
    public static func matmul(
        _ w: WeightMatrix, input x: FloatBuffer, inputOffset: Int = 0, rows n: Int,
        output y: FloatBuffer, outputOffset: Int = 0, scratch: MatmulScratch? = nil, pool: WorkerPool? = nil,
        independentRows: Bool = false
    ) {
        fusedMatmul(Products(MatmulTarget(w, y, outputOffset)), input: x, inputOffset: inputOffset, rows: n,
                    scratch: scratch, pool: pool, independentRows: independentRows)
    }

    /// A product's weights and where its output goes.
    public struct MatmulTarget: Sendable {
        let weights: WeightMatrix
        let output: FloatBuffer
        let offset: Int
        public init(_ weights: WeightMatrix, _ output: FloatBuffer, _ offset: Int = 0) {
            self.weights = weights
            self.output = output
            self.offset = offset
        }
    }

    /// Up to three products of one input, as a value (no array on the hot path).
    public struct Products: Sendable {
        let a: MatmulTarget, b: MatmulTarget?, c: MatmulTarget?
        public init(_ a: MatmulTarget, _ b: MatmulTarget? = nil, _ c: MatmulTarget? = nil) {
            self.a = a
            self.b = b
            self.c = c
        }
        var count: Int { c != nil ? 3 : b != nil ? 2 : 1 }
        subscript(i: Int) -> MatmulTarget { i == 0 ? a : i == 1 ? b! : c! }

        /// Chunks when each product's rows are cut into pieces of `rowsPerChunk`.
        func chunkCount(rowsPerChunk: Int) -> Int {
            var chunks = 0
            for i in 0..<count { chunks += (self[i].weights.rows + rowsPerChunk - 1) / rowsPerChunk }
            return chunks
        }

        /// The product and the weight rows of chunk `chunk` under that cut.
        func locate(chunk: Int, rowsPerChunk: Int) -> (Int, Range<Int>) {
            var remaining = chunk
            for i in 0..<count {
                let rows = self[i].weights.rows
                let chunks = (rows + rowsPerChunk - 1) / rowsPerChunk
                if remaining < chunks {
                    let begin = remaining * rowsPerChunk
                    return (i, begin..<min(rows, begin + rowsPerChunk))
                }
                remaining -= chunks
            }
            preconditionFailure("chunk \(chunk) out of range")
        }
    }

    /// Several products of the same input (q, k, v; or gate and up) in one parallel region:
    /// Y_i (n, W_i.rows) = X (n, cols) · W_iᵀ for each target. `independentRows` as in `matmul`.
    public static func fusedMatmul(
        _ products: Products, input x: FloatBuffer, inputOffset: Int = 0, rows n: Int,
        scratch: MatmulScratch? = nil, pool: WorkerPool? = nil, independentRows: Bool = false
    ) {
        precondition(n >= 1, "matmul needs at least one row")
        let cols = products.a.weights.cols
        precondition(inputOffset >= 0 && inputOffset + n * cols <= x.count, "matmul input out of bounds")
        // Streaming: the weights are read once per call, each row against every input row.
        let streaming = n <= smallBatch || independentRows
        var quantizedInput = false, ggmlQuantizedInput = false
        for i in 0..<products.count {
            let (w, y, offset) = (products[i].weights, products[i].output, products[i].offset)
            precondition(w.cols == cols, "fused products need the same input size")
            precondition(offset >= 0 && offset + n * w.rows <= y.count, "matmul output out of bounds")
            if case .q8(_, _, let groupSize) = w.storage {
                guard let scratch else { preconditionFailure("int8 weights need a MatmulScratch") }
                // Larger blocks multiply float activations by dequantized weights instead.
                if !quantizedInput && streaming {
                    QuantizedKernels.quantizeInput(x.pointer + inputOffset, rows: n, cols: cols, groupSize: groupSize, scratch: scratch)
                    quantizedInput = true
                }
            }
            if case .ggml(let type, _) = w.storage {
                // Each worker dequantizes weight rows into its part of `scratch.dequantized`.
                guard let scratch else { preconditionFailure("GGUF block weights need a MatmulScratch") }
                precondition(cols <= scratch.maxCols && (pool?.workers ?? 1) <= scratch.workers,
                             "GGUF block weights need a MatmulScratch with room for \(cols) columns and every worker")
                // The streaming kernels of quantized types read the input as int8 blocks: quantized
                // once here for every product of the call, whatever their types.
                if streaming && !ggmlQuantizedInput && fastKernel(type, cols: cols) == 1 {
                    precondition(n <= scratch.maxRows, "GGUF block weights need a MatmulScratch with room for \(n) rows")
                    for b in 0..<n {
                        ggml_quantize_activations(x.pointer + inputOffset + b * cols, Int32(cols),
                                                  scratch.ggmlActivations + b * scratch.ggmlActivationStride)
                    }
                    ggmlQuantizedInput = true
                }
            }
        }
        let workers = pool?.workers ?? 1
        var totalRows = 0
        for i in 0..<products.count { totalRows += products[i].weights.rows }
        let xp = UnsafePointer(x.pointer + inputOffset)
        if !streaming, gemm_available() != 0, let scratch, n <= scratch.maxRows, cols <= scratch.maxCols,
           workers <= scratch.workers {
            blockedProducts(products, input: xp, rows: n, cols: cols, totalRows: totalRows, scratch: scratch, pool: pool)
            return
        }
        // Chunks of weight rows. Up to `smallBatch` rows (memory-bound): about four chunks per
        // worker, so a slow worker hands work to the others, but never under 64 KB of weights.
        // More rows (compute-bound sgemm, which repacks its inputs per call): two per worker.
        let rowBytes = max(1, weightRowBytes(products.a.weights))
        var chunkRows: Int
        if streaming {
            chunkRows = max((1 << 16) / rowBytes, (totalRows + 4 * workers - 1) / (4 * workers))
            // A few rows are memory-bound too: each chunk's weights are reused from L2 for every row.
            if n > 1 { chunkRows = min(chunkRows, max(16, (1 << 18) / rowBytes)) }
        } else {
            chunkRows = max(64, (totalRows + 2 * workers - 1) / (2 * workers))
            switch products.a.weights.storage {
            case .q8, .ggml: chunkRows = min(chunkRows, MatmulScratch.dequantizedRows)
            case .float32: break
            }
        }
        chunkRows = (chunkRows + 15) / 16 * 16
        let chunks = products.chunkCount(rowsPerChunk: chunkRows)
        let work = UncheckedSendable(xp)
        let body = { (chunk: Int, worker: Int) in
            let (i, range) = products.locate(chunk: chunk, rowsPerChunk: chunkRows)
            let target = products[i]
            product(target.weights, input: work.value, rows: n, rowRange: range, output: target.output.pointer + target.offset,
                    streaming: streaming, independentRows: independentRows, scratch: scratch, worker: worker)
        }
        if let pool, workers > 1, totalRows * cols * n >= 1 << 15 {
            pool.run(chunks: chunks, body)
        } else {
            for chunk in 0..<chunks { body(chunk, 0) }
        }
    }

    /// A prompt block on AVX-512 (see gemm_kernels.h): the input is packed once, for every
    /// product and every worker, then the workers take chunks of 32-row weight stripes.
    private static func blockedProducts(
        _ products: Products, input xp: UnsafePointer<Float>, rows n: Int, cols: Int, totalRows: Int,
        scratch: MatmulScratch, pool: WorkerPool?
    ) {
        let workers = pool?.workers ?? 1
        let panels = (n + Int(gemm_panel_rows()) - 1) / Int(gemm_panel_rows())
        let panelsPerChunk = max(1, (panels + 2 * workers - 1) / (2 * workers))
        let input = UncheckedSendable(xp), packed = UncheckedSendable(scratch.packedInput)
        // GGUF blocks of a type gemm_int8.h decodes take the int8 products, from an int8 form of
        // the input; the others the float32 ones. Each form is packed only if some product reads it.
        let int8 = gemm_int8_available() != 0
        var packFloat = false, packInt8 = false
        for i in 0..<products.count {
            if int8, case .ggml(let type, _) = products[i].weights.storage, gemm_int8_decodes(Int32(type.rawValue)) != 0 {
                packInt8 = true
            } else {
                packFloat = true
            }
        }
        let packed8 = UncheckedSendable(scratch.int8Input)
        let pack = { (chunk: Int, _: Int) in
            let begin = chunk * panelsPerChunk
            if packFloat {
                gemm_pack_input(input.value, Int32(n), Int32(cols), Int32(begin), Int32(min(panels, begin + panelsPerChunk)),
                                packed.value)
            }
            if packInt8 {
                // The same input rows; int8 panels divide float32 ones. cols is a multiple of 32,
                // as every row of those GGUF types is.
                let rows = Int(gemm_panel_rows())
                gemm_int8_pack_input(input.value, Int32(n), Int32(cols), Int32(begin * rows),
                                     Int32(min(n, (begin + panelsPerChunk) * rows)), packed8.value)
            }
        }
        // About eight chunks per worker, so a worker slowed by another process hands work on.
        let chunkRows = max(32, (totalRows / (8 * workers) + 31) / 32 * 32)
        let body = { (chunk: Int, worker: Int) in
            let (i, range) = products.locate(chunk: chunk, rowsPerChunk: chunkRows)
            let (w, y) = (products[i].weights, products[i].output.pointer + products[i].offset)
            let buffer = scratch.weightBuffer(worker)
            let (k, begin, end, ldy) = (Int32(cols), Int32(range.lowerBound), Int32(range.upperBound), Int32(w.rows))
            switch w.storage {
            case .float32(let weights):
                gemm_f32(packed.value, Int32(n), k, weights.pointer, begin, end, y, ldy, buffer)
            case .q8(let values, let scales, let groupSize):
                gemm_q8(packed.value, Int32(n), k, values.pointer, scales.pointer, Int32(groupSize), begin, end, y, ldy, buffer)
            case .ggml(let type, let bytes) where int8 && gemm_int8_decodes(Int32(type.rawValue)) != 0:
                // Each 32-row stripe is decoded to int8 into the worker's stripe buffer.
                let status = gemm_int8_ggml(packed8.value, Int32(n), k, Int32(type.rawValue), bytes.pointer, begin, end, y, ldy,
                                            scratch.int8Stripe(worker))
                precondition(status == 0, "gemm_int8_ggml refused \(type.name) × \(cols)")
            case .ggml(let type, let bytes):
                // Each 32-row stripe is dequantized into the worker's rows before packing.
                let rows = scratch.dequantized + worker * MatmulScratch.dequantizedRows * cols
                let status = gemm_ggml(packed.value, Int32(n), k, Int32(type.rawValue), bytes.pointer, begin, end, y, ldy,
                                       buffer, rows)
                precondition(status == 0, "gemm_ggml refused \(type.name) × \(cols)")
            }
        }
        let chunks = products.chunkCount(rowsPerChunk: chunkRows)
        let packChunks = (panels + panelsPerChunk - 1) / panelsPerChunk
        if let pool, workers > 1 {
            if packChunks > 0 { pool.run(chunks: packChunks, pack) }
            pool.run(chunks: chunks, body)
        } else {
            for chunk in 0..<packChunks { pack(chunk, 0) }
            for chunk in 0..<chunks { body(chunk, 0) }
        }
    }

    /// Whether prompt blocks use the AVX-512 blocked products (false: BLAS sgemm).
    public static var blockedProductsEnabled: Bool { gemm_available() != 0 }

    /// Switches the blocked products off or back on (on only if the CPU has AVX-512), for tests
    /// and benchmarks that compare them with sgemm; returns the previous setting.
    @discardableResult
    public static func setBlockedProducts(enabled: Bool) -> Bool { gemm_force(enabled ? 1 : 0) != 0 }

    /// Switches the AVX-512 softmax, SwiGLU and decode attention off or back on (on only if the
    /// CPU has AVX-512), for tests of the portable loops; returns the previous setting.
    @discardableResult
    public static func setVectorActivations(enabled: Bool) -> Bool { activations_force_vector(enabled ? 1 : 0) != 0 }

    /// The name of the float32 streaming path ("avx512", "avx2", "portable"; see `product`).
    public static var floatKernelName: String { String(cString: f32_kernel_name()) }

    /// Selects the float32 streaming path by name ("portable", "avx2", "avx512", "auto"); false
    /// when this CPU cannot run it. For tests and benchmarks that compare the paths.
    @discardableResult
    public static func forceFloatKernel(_ name: String) -> Bool { f32_force_kernel(name) != 0 }

    /// Up to this many rows, products stream the weights (see `product`).
    static let smallBatch = 16

    /// Bytes one weight row reads (int8 values only for Q8_0), for sizing chunks.
    private static func weightRowBytes(_ w: WeightMatrix) -> Int {
        switch w.storage {
        case .float32: w.cols * 4
        case .q8: w.cols
        case .ggml(let type, _): type.rowBytes(count: w.cols)
        }
    }

    /// Y[:, rowRange] for one weight matrix; Y is (n, W.rows) row-major.
    private static func product(
        _ w: WeightMatrix, input xp: UnsafePointer<Float>, rows n: Int, rowRange: Range<Int>,
        output yp: UnsafeMutablePointer<Float>, streaming: Bool, independentRows: Bool, scratch: MatmulScratch?, worker: Int
    ) {
        let m = Int32(rowRange.count), k = Int32(w.cols), ldy = Int32(w.rows)
        switch w.storage {
        case .float32(let weights):
            let wp = weights.pointer + rowRange.lowerBound * w.cols
            if streaming {
                // A few rows: sgemm would copy (pack) the weights, so stream them once instead,
                // with Quill's kernel that reuses each loaded weight for all rows and computes a
                // row the same way alone or in a batch (and in any chunk: sgemv's rounding
                // depends on where the chunk starts). Only without AVX2, and for rows that need
                // not be independent, OpenBLAS's sgemv per row (W[rows] (m, in) · x_b (in) →
                // y_b[rows]) replaces the portable loop.
                if independentRows || f32_kernel_vectorised() != 0 {
                    f32_matmul_small(weights.pointer, xp, Int32(n), Int32(w.rows), k,
                                     Int32(rowRange.lowerBound), Int32(rowRange.upperBound), yp)
                    return
                }
                for b in 0..<n {
                    quill_sgemv(m, k, 1, wp, k, xp + b * w.cols, 0, yp + b * w.rows + rowRange.lowerBound)
                }
            } else {
                // X (n, in) · W[rows]ᵀ (in, m) → Y[:, rows] (n, m) inside Y (n, out)
                quill_sgemm(1, Int32(n), m, k, 1,
                            xp, k, wp, k, 0, yp + rowRange.lowerBound, ldy)
            }
        case .q8(let values, let scales, let groupSize) where !streaming:
            // A prefill block: int8 dot products have no blocking for reuse, so dequantize this
            // chunk's rows (at most `dequantizedRows`) into the worker's buffer and use sgemm.
            let buffer = scratch!.dequantized + worker * MatmulScratch.dequantizedRows * w.cols
            q8_dequantize_rows(values.pointer, scales.pointer, k, Int32(groupSize),
                               Int32(rowRange.lowerBound), Int32(rowRange.upperBound), buffer)
            quill_sgemm(1, Int32(n), m, k, 1, xp, k, buffer, k, 0, yp + rowRange.lowerBound, ldy)
        case .q8(let values, let scales, let groupSize):
            QuantizedKernels.product(values: values.pointer, scales: scales.pointer, groupSize: groupSize,
                                     rows: w.rows, cols: w.cols, batch: n, rowRange: rowRange, output: yp, scratch: scratch!)
        case .ggml(let type, let bytes):
            let buffer = scratch!.dequantized + worker * MatmulScratch.dequantizedRows * w.cols
            let status: Int32
            if streaming && fastKernel(type, cols: w.cols) >= 0 {
                // A few rows, on the blocks as stored (ggml_dot.h): quantized types against the
                // int8 input blocks quantized in `fusedMatmul`, F16 and BF16 against float32.
                status = ggml_matmul_fast(Int32(type.rawValue), bytes.pointer, k, xp, scratch!.ggmlActivations,
                                          scratch!.ggmlActivationStride, Int32(n), Int32(rowRange.lowerBound),
                                          Int32(rowRange.upperBound), yp, ldy)
            } else if streaming {
                // A few rows: dequantize a few weight rows at a time into the worker's buffer and
                // multiply them with the float32 streaming kernel, so each output is the same bits
                // as for the dequantized float32 matrix, alone or in a batch.
                status = ggml_matmul_small(Int32(type.rawValue), bytes.pointer, k, xp, Int32(n),
                                           Int32(rowRange.lowerBound), Int32(rowRange.upperBound), yp, ldy, buffer)
            } else {
                // A prefill block without the blocked products: as for int8 weights, this chunk's
                // rows (at most `dequantizedRows`) as float32, then
                // X (n, in) · B (m, in)ᵀ → Y[:, rows] (n, m) inside Y (n, out).
                status = ggml_dequantize_rows(Int32(type.rawValue), bytes.pointer, k, Int32(rowRange.lowerBound),
                                              Int32(rowRange.upperBound), buffer)
                quill_sgemm(1, Int32(n), m, k, 1, xp, k, buffer, k, 0, yp + rowRange.lowerBound, ldy)
            }
            precondition(status == 0, "GGUF block product refused \(type.name) × \(w.cols)")
        }
    }

    /// Which streaming kernel of `ggml_dot.h` multiplies `type` with `cols` columns: 1 with
    /// quantized input blocks, 0 with float32 input, -1 none (F32, or rows that blocks of 32 do
    /// not tile: the dequantizing path).
    static func fastKernel(_ type: GGMLType, cols: Int) -> Int {
        cols % 32 == 0 ? Int(ggml_fast_activation_kind(Int32(type.rawValue))) : -1
    }

    /// The name of the streaming path for GGUF block weights ("avx512", "avx512vnni", "avxvnni", "avx2",
    /// "portable"; see `ggml_dot.h`).
    public static var ggmlKernelName: String { String(cString: ggml_fast_kernel_name()) }

    /// Selects the streaming path for GGUF block weights by name (as `ggmlKernelName`, or
    /// "auto"); false when this CPU cannot run it. For tests and benchmarks.
    @discardableResult
    public static func forceGGMLKernel(_ name: String) -> Bool { ggml_fast_force_kernel(name) != 0 }

    /// Copies row `row` of `w` (dequantized if needed) into `buffer` at `offset`: the
    /// embedding lookup.
    public static func copyRow(of w: WeightMatrix, row: Int, into buffer: FloatBuffer, at offset: Int) {
        precondition(row >= 0 && row < w.rows, "row \(row) out of range 0..<\(w.rows)")
        precondition(offset >= 0 && offset + w.cols <= buffer.count, "copyRow output out of bounds")
        let out = buffer.pointer + offset
        switch w.storage {
        case .float32(let weights):
            out.update(from: weights.pointer + row * w.cols, count: w.cols)
        case .q8(let values, let scales, let groupSize):
            let base = row * w.cols
            for i in 0..<w.cols {
                out[i] = Float(values.pointer[base + i]) * scales.pointer[(base + i) / groupSize]
            }
        case .ggml(let type, let bytes):
            let status = ggml_dequantize_rows(Int32(type.rawValue), bytes.pointer, Int32(w.cols), Int32(row), Int32(row + 1), out)
            precondition(status == 0, "ggml_dequantize_rows refused \(type.name) × \(w.cols)")
        }
    }

    // MARK: Elementwise

    /// RMSNorm of each of `n` rows of length `dim`: out = x / sqrt(mean(x²) + eps) * weight.
    public static func rmsnorm(
        input x: FloatBuffer, weight: FloatView, rows n: Int, dim: Int,
        output out: FloatBuffer, epsilon: Float
    ) {
        precondition(weight.count == dim && n * dim <= x.count && n * dim <= out.count, "rmsnorm sizes")
        let w = weight.pointer
        for r in 0..<n {
            let xr = x.pointer + r * dim, yr = out.pointer + r * dim
            let sumSquares = dot(UnsafePointer(xr), UnsafePointer(xr), dim)
            let scale = 1 / (sumSquares / Float(dim) + epsilon).squareRoot()
            for i in 0..<dim { yr[i] = w[i] * (scale * xr[i]) }
        }
    }

    /// y[i] += x[i] for `count` elements (the residual connection).
    public static func add(_ x: FloatBuffer, into y: FloatBuffer, count: Int) {
        precondition(count <= x.count && count <= y.count, "add sizes")
        for i in 0..<count { y.pointer[i] += x.pointer[i] }
    }

    /// SwiGLU in place: gate[i] = silu(gate[i]) * up[i], silu(v) = v / (1 + e^-v). Large
    /// blocks (prefill) are split over the pool: the exponentials are most of a layer's
    /// non-matrix work.
    public static func swiglu(gate: FloatBuffer, up: FloatBuffer, count: Int, pool: WorkerPool? = nil) {
        precondition(count <= gate.count && count <= up.count, "swiglu sizes")
        let g = UncheckedSendable(gate.pointer), u = UncheckedSendable(up.pointer)
        let piece = 1 << 14
        let pieces = (count + piece - 1) / piece
        let body = { (chunk: Int, worker: Int) in
            let begin = chunk * piece
            quill_swiglu(g.value + begin, u.value + begin, Int32(min(count, begin + piece) - begin))
        }
        if let pool, pieces > 1 { pool.run(chunks: pieces, body) } else { for c in 0..<pieces { body(c, 0) } }
    }

    /// Softmax in place over `count` elements starting at `offset`.
    public static func softmax(_ buffer: FloatBuffer, offset: Int = 0, count: Int) {
        precondition(count >= 1 && offset >= 0 && offset + count <= buffer.count, "softmax bounds")
        softmax(buffer.pointer + offset, count)
    }

    /// Index of the largest of `count` elements starting at `offset` (the first on ties).
    public static func argmax(_ buffer: FloatBuffer, offset: Int = 0, count: Int) -> Int {
        precondition(count >= 1 && offset >= 0 && offset + count <= buffer.count, "argmax bounds")
        let p = buffer.pointer + offset
        var best = 0
        var bestValue = p[0]
        for i in 1..<count where p[i] > bestValue {
            best = i
            bestValue = p[i]
        }
        return best
    }

    // MARK: Pointer helpers (module-internal)

    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        // Eight independent SIMD accumulators so the loop is not bound by add latency.
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 16 <= n {
            acc0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            acc1 += ra.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
                * rb.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
            i += 16
        }
        var sum = (acc0 + acc1).sum()
        while i < n {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    @inline(__always)
    static func softmax(_ p: UnsafeMutablePointer<Float>, _ n: Int) { quill_softmax(p, Int32(n)) }
}
