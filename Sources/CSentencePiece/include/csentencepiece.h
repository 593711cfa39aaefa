// A plain C view of SentencePiece: an opaque handle, integer status codes and a
// thread-local last-error message. No C++ type or exception crosses this boundary.
#ifndef CSENTENCEPIECE_H
#define CSENTENCEPIECE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spm_processor spm_processor;

enum {
    SPM_OK = 0,
    SPM_ERROR = 1,          // SentencePiece reported an error; see spm_last_error()
    SPM_OUT_OF_RANGE = 2,   // an id outside the vocabulary
    SPM_INTERNAL = 3        // an unexpected C++ exception (e.g. out of memory)
};

/// The message of the last failed call on this thread ("" if none).
const char *spm_last_error(void);

/// Loads a model from the bytes of a serialized ModelProto (the content of a .model file);
/// the bytes are copied. Any bytes at all are safe to pass: malformed ones give SPM_ERROR.
/// On success *out owns a processor to release with spm_free.
int spm_load_from_bytes(const void *bytes, size_t length, spm_processor **out);
void spm_free(spm_processor *processor);

int spm_vocab_size(const spm_processor *processor);
int spm_bos_id(const spm_processor *processor);
int spm_eos_id(const spm_processor *processor);

/// Encodes `length` bytes of UTF-8 text. On success *ids is a malloc'd array of *count ids
/// (NULL when empty) that the caller frees with spm_free_ids.
int spm_encode(const spm_processor *processor, const char *text, size_t length,
               int32_t **ids, size_t *count);
void spm_free_ids(int32_t *ids);

/// SentencePiece's own decode of a whole id sequence: control ids print nothing, the first
/// piece's leading space is dropped, byte pieces are joined into characters (a byte that is
/// not part of valid UTF-8 becomes U+FFFD). An id outside the vocabulary is SPM_OUT_OF_RANGE.
/// On success *text is a malloc'd buffer of *length bytes (NULL when empty), freed with
/// spm_free_text.
int spm_decode(const spm_processor *processor, const int32_t *ids, size_t count,
               char **text, size_t *length);
void spm_free_text(char *text);

/// Piece text of an id (UTF-8, "▁" for a space as stored in the model). On success
/// *piece points at bytes owned by the processor, valid until spm_free; *length is its size.
int spm_id_to_piece(const spm_processor *processor, int id, const char **piece, size_t *length);

/// Kinds of pieces, for streaming decode. Each returns 0 or 1 (0 for an out-of-range id).
int spm_is_byte(const spm_processor *processor, int id);
int spm_is_control(const spm_processor *processor, int id);
int spm_is_unknown(const spm_processor *processor, int id);

/// The kind of every piece at once (what the three above say, in one pass): kinds[id] is
/// SPM_PIECE_NORMAL, _CONTROL, _UNKNOWN or _BYTE, for ids below min(count, vocabulary size).
enum { SPM_PIECE_NORMAL = 0, SPM_PIECE_CONTROL = 1, SPM_PIECE_UNKNOWN = 2, SPM_PIECE_BYTE = 3 };
void spm_piece_kinds(const spm_processor *processor, uint8_t *kinds, size_t count);

/// Unknown and padding ids (-1 when the model has no padding piece).
int spm_unk_id(const spm_processor *processor);
int spm_pad_id(const spm_processor *processor);

/// A piece's score and kind, to write the vocabulary elsewhere (GGUF's tokenizer.ggml.*).
/// *type is SentencePiece's ModelProto piece type as far as the processor tells it: 2 unknown,
/// 3 control, 5 unused, 6 byte, else 1 (normal; the C++ API does not single out user-defined
/// pieces, type 4). An id outside the vocabulary is SPM_OUT_OF_RANGE.
int spm_piece_info(const spm_processor *processor, int id, float *score, int *type);

#ifdef __cplusplus
}
#endif

#endif
