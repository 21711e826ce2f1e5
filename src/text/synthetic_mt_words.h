// The synthetic translation task's closed word lists: function words with their target
// translations, pronouns, particles, and the English seed words of each open class (the rest of
// each class is pseudo-words). Private to src/text/synthetic_mt.cpp.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace qs::text::synthetic_words {

// Source function words and their target translations (prepositions become postpositions).
inline const std::vector<std::pair<std::string, std::string>> kDetSg = {{"the", "el"}, {"a", ""}, {"this", "ko"}, {"every", "mina"}};
inline const std::vector<double> kDetSgP = {0.45, 0.35, 0.1, 0.1};
inline const std::vector<std::pair<std::string, std::string>> kDetPl = {{"the", "el"}, {"these", "kora"}, {"some", "ika"}, {"many", "oku"}};
inline const std::vector<double> kDetPlP = {0.5, 0.15, 0.2, 0.15};
inline const std::vector<std::pair<std::string, std::string>> kPreps = {
    {"in", "de"},       {"on", "ue"},    {"with", "tomo"}, {"near", "soba"}, {"under", "shita"},
    {"behind", "ushiro"}, {"from", "kara"}, {"to", "made"},  {"for", "tame"},  {"after", "ato"}};
struct Pronoun {
  const char *src, *tgt, *feat;
};
inline const Pronoun kPronouns[] = {{"I", "wa", "1sg"},  {"he", "ho", "3sg"},  {"she", "hi", "3sg"},
                             {"it", "sore", "3sg"}, {"we", "wan", "1pl"}, {"they", "hon", "3pl"}};
inline std::string agreement_particle(const std::string& feat) {
  return feat == "1sg" ? "mu" : feat == "3sg" ? "su" : feat == "1pl" ? "mira" : "sura";
}
inline const char* const kCaseSubj = "ka";
inline const char* const kCaseObj = "ro";
inline const char* const kRelMarker = "ta";
inline const char* const kPluralSuffix = "ni";

inline const std::vector<std::string> kNouns = {"dog", "cat", "bird", "sailor", "baker", "painter", "teacher", "farmer", "king",
                                         "queen", "doctor", "student", "friend", "horse", "girl", "boy", "river",
                                         "house", "tree", "book", "garden", "city", "letter", "song", "apple",
                                         "window", "road", "ship", "field", "story"};
inline const std::vector<std::string> kVerbsTr = {"see", "like", "find", "help", "follow", "call", "love", "meet",
                                           "visit", "want", "need", "carry", "hold", "build", "paint", "read",
                                           "write", "open", "clean", "answer", "watch", "catch", "push"};
inline const std::vector<std::string> kVerbsIntr = {"sleep", "run", "walk", "sing", "wait", "laugh",
                                             "swim", "work", "dance", "smile", "travel", "rest"};
inline const std::vector<std::string> kAdjectives = {"big", "small", "old", "young", "red", "happy", "quiet", "tall",
                                              "dark", "bright", "green", "strong", "cold", "warm", "clever"};
inline const std::vector<std::string> kAdverbs = {"quickly", "slowly", "often", "quietly", "rarely",
                                           "today", "again", "always", "happily", "carefully"};

// English noun/verb homographs among the verb seeds, the commonest verbs first (intransitive and
// transitive interleaved by rank); SyntheticMtOptions::n_homographs takes a prefix.
inline const std::vector<std::string> kHomographs = {"sleep", "help",  "run",    "call",  "walk",  "love", "wait",
                                              "visit", "laugh", "need",   "swim",  "paint", "work", "answer",
                                              "dance", "watch", "smile",  "catch", "rest",  "push"};

}  // namespace qs::text::synthetic_words
