// C shim over sentencepiece::SentencePieceProcessor. Every entry point catches all C++
// exceptions so none unwinds into Swift, and reports failures through a status code.
#include "csentencepiece.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

struct spm_processor {
    sentencepiece::SentencePieceProcessor processor;
    // Piece strings are cached so spm_id_to_piece can hand out stable pointers.
    std::vector<std::string> pieces;
};

static thread_local std::string last_error;

static int fail(int code, const std::string &message) {
    last_error = message;
    return code;
}

extern "C" const char *spm_last_error(void) { return last_error.c_str(); }

extern "C" int spm_load_from_bytes(const void *bytes, size_t length, spm_processor **out) {
    *out = nullptr;
    // protobuf takes an int size; a model is far smaller than 2 GiB anyway.
    if (length > static_cast<size_t>(INT32_MAX)) return fail(SPM_ERROR, "model larger than 2 GiB");
    if (bytes == nullptr && length > 0) return fail(SPM_ERROR, "no bytes");
    spm_processor *p = nullptr;
    try {
        p = new spm_processor();
        const auto status = p->processor.LoadFromSerializedProto(
            absl::string_view(static_cast<const char *>(bytes), length));
        if (!status.ok()) {
            delete p;
            return fail(SPM_ERROR, status.ToString());
        }
        const int n = p->processor.GetPieceSize();
        if (n <= 0) {
            delete p;
            return fail(SPM_ERROR, "the model has no pieces");
        }
        p->pieces.reserve(n);
        for (int id = 0; id < n; ++id) p->pieces.push_back(p->processor.IdToPiece(id));
        *out = p;
        return SPM_OK;
    } catch (const std::exception &e) {
        delete p;
        return fail(SPM_INTERNAL, e.what());
    } catch (...) {
        delete p;
        return fail(SPM_INTERNAL, "unknown C++ exception");
    }
}

extern "C" void spm_free(spm_processor *processor) { delete processor; }

extern "C" int spm_vocab_size(const spm_processor *p) { return static_cast<int>(p->pieces.size()); }
extern "C" int spm_bos_id(const spm_processor *p) { return p->processor.bos_id(); }
extern "C" int spm_eos_id(const spm_processor *p) { return p->processor.eos_id(); }

extern "C" int spm_encode(const spm_processor *p, const char *text, size_t length,
                          int32_t **ids, size_t *count) {
    *ids = nullptr;
    *count = 0;
    try {
        std::vector<int> result;
        const auto status =
            p->processor.Encode(absl::string_view(text, length), &result);
        if (!status.ok()) return fail(SPM_ERROR, status.ToString());
        if (result.empty()) return SPM_OK;
        auto *buffer = static_cast<int32_t *>(std::malloc(result.size() * sizeof(int32_t)));
        if (buffer == nullptr) return fail(SPM_INTERNAL, "out of memory");
        for (size_t i = 0; i < result.size(); ++i) buffer[i] = result[i];
        *ids = buffer;
        *count = result.size();
        return SPM_OK;
    } catch (const std::exception &e) {
        return fail(SPM_INTERNAL, e.what());
    } catch (...) {
        return fail(SPM_INTERNAL, "unknown C++ exception");
    }
}

extern "C" void spm_free_ids(int32_t *ids) { std::free(ids); }

extern "C" int spm_decode(const spm_processor *p, const int32_t *ids, size_t count,
                          char **text, size_t *length) {
    *text = nullptr;
    *length = 0;
    try {
        std::vector<int> input(count);
        for (size_t i = 0; i < count; ++i) {
            if (ids[i] < 0 || static_cast<size_t>(ids[i]) >= p->pieces.size())
                return fail(SPM_OUT_OF_RANGE, "token id " + std::to_string(ids[i]) + " is outside the vocabulary");
            input[i] = ids[i];
        }
        std::string result;
        const auto status = p->processor.Decode(input, &result);
        if (!status.ok()) return fail(SPM_ERROR, status.ToString());
        if (result.empty()) return SPM_OK;
        auto *buffer = static_cast<char *>(std::malloc(result.size()));
        if (buffer == nullptr) return fail(SPM_INTERNAL, "out of memory");
        std::memcpy(buffer, result.data(), result.size());
        *text = buffer;
        *length = result.size();
        return SPM_OK;
    } catch (const std::exception &e) {
        return fail(SPM_INTERNAL, e.what());
    } catch (...) {
        return fail(SPM_INTERNAL, "unknown C++ exception");
    }
}

extern "C" void spm_free_text(char *text) { std::free(text); }

static bool in_range(const spm_processor *p, int id) {
    return id >= 0 && static_cast<size_t>(id) < p->pieces.size();
}

extern "C" int spm_id_to_piece(const spm_processor *p, int id, const char **piece, size_t *length) {
    if (!in_range(p, id)) return fail(SPM_OUT_OF_RANGE, "token id " + std::to_string(id) + " is outside the vocabulary");
    *piece = p->pieces[id].data();
    *length = p->pieces[id].size();
    return SPM_OK;
}

extern "C" int spm_is_byte(const spm_processor *p, int id) {
    return in_range(p, id) && p->processor.IsByte(id) ? 1 : 0;
}
extern "C" int spm_is_control(const spm_processor *p, int id) {
    return in_range(p, id) && p->processor.IsControl(id) ? 1 : 0;
}
extern "C" int spm_is_unknown(const spm_processor *p, int id) {
    return in_range(p, id) && p->processor.IsUnknown(id) ? 1 : 0;
}

extern "C" void spm_piece_kinds(const spm_processor *p, uint8_t *kinds, size_t count) {
    const size_t n = std::min(count, p->pieces.size());
    for (size_t id = 0; id < n; ++id) {
        const int i = static_cast<int>(id);
        kinds[id] = p->processor.IsControl(i) ? SPM_PIECE_CONTROL
                  : p->processor.IsUnknown(i) ? SPM_PIECE_UNKNOWN
                  : p->processor.IsByte(i)    ? SPM_PIECE_BYTE
                                              : SPM_PIECE_NORMAL;
    }
}

extern "C" int spm_unk_id(const spm_processor *p) { return p->processor.unk_id(); }
extern "C" int spm_pad_id(const spm_processor *p) { return p->processor.pad_id(); }

extern "C" int spm_piece_info(const spm_processor *p, int id, float *score, int *type) {
    if (!in_range(p, id)) return fail(SPM_OUT_OF_RANGE, "token id " + std::to_string(id) + " is outside the vocabulary");
    try {
        *score = p->processor.GetScore(id);
        *type = p->processor.IsUnknown(id) ? 2 : p->processor.IsControl(id) ? 3 : p->processor.IsUnused(id) ? 5
              : p->processor.IsByte(id) ? 6 : 1;
        return SPM_OK;
    } catch (const std::exception &e) {
        return fail(SPM_INTERNAL, e.what());
    } catch (...) {
        return fail(SPM_INTERNAL, "unknown C++ exception");
    }
}
